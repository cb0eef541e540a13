"""CrossGuard pack `ctfleet-tenancy`: the ctfleet policies, served to the Pulumi engine.

    pulumi preview --policy-pack infra/policy      # or: pulumi up --policy-pack infra/policy

The policies themselves are ctfleet/stacks/policies.py (tested by tests/test_stacks_policies.py,
and through this very file by tests/test_stacks_analyzer.py); this file only hands them to
pulumi-policy, which serves them over gRPC and prints its port, as the engine expects.
"""

from pathlib import Path

from pulumi_policy import PolicyPack

from ctfleet.stacks.crossguard import norm_oracle, policies

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout whose registry and norms the pack reads

PolicyPack(name="ctfleet-tenancy", policies=policies(lambda: norm_oracle(ROOT)))
