"""CrossGuard pack `ctfleet-tenancy`: the ctfleet policies, served to the Pulumi engine.

    pulumi preview --policy-pack infra/policy      # or: pulumi up --policy-pack infra/policy

The policies themselves are ctfleet/stacks/policies.py (tested by tests/test_stacks_policies.py);
this file only hands them to pulumi-policy.
"""

from pulumi_policy import PolicyPack

from ctfleet.stacks.crossguard import norm_oracle, policies

PolicyPack(name="ctfleet-tenancy", policies=policies(norm_oracle))
