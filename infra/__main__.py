"""ctfleet's Pulumi program: read the stack config, create the tier's component, export.

Everything else lives in the ctfleet package (ctfleet/stacks/): the config is validated
and the stack planned in pure code from the registry and the norms, then one
ComponentResource per tier declares the Kubernetes objects. `ctfleet stacks plan STACK`
prints the same plan without a cloud.
"""

from pathlib import Path

from ctfleet.stacks.program import load_inputs, main

# The registry and norms of this checkout (inventory/, standards/, infra/hosting.yaml).
main(load_inputs(Path(__file__).resolve().parent.parent))
