"""Pulumi stacks: what the national, regional (SDR), ECI/GCT and SDL clouds declare.

Layout (pure first, Pulumi at the edge):

    names.py       stack names, tenant namespace names and label rules (pure)
    hosting.py     the hosting catalogue: national platforms and system tenants (infra/hosting.yaml)
    config.py      stack config, validated up front; one error naming every bad key (pure)
    plan.py        what a stack declares, from registry + norms + config (pure)
    manifests.py   the plan as Kubernetes objects (pure dicts, camelCase)
    policies.py    the invariants every tenant must satisfy, over Kubernetes objects (pure)
    generate.py    Pulumi.<stack>.yaml files compiled from the registry
    components.py  one ComponentResource per tier (pulumi-kubernetes; the only Pulumi code)
    program.py     the Pulumi program body that infra/__main__.py runs
    schema.py      cached Kubernetes OpenAPI (JSON schema) validation of captured objects

The CLI (``ctfleet stacks plan``), the Pulumi program and the tests all go through
``plan.plan_stack`` and ``manifests.render``, so what an operator reads is what the stack does.

An edge. May import: the core and the shared layer. Never another edge nor the lab wing
(Pulumi mock runs are ``ctfleet.lab.pulumi_mocks``).
"""
