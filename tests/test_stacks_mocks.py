"""The Pulumi program itself, run under ``pulumi.runtime`` mocks (no CLI, no cluster).

The national stack, all 12 regional stacks, one ECI/GCT and one SDL stack run once per
session; every Kubernetes object they register is captured (inputs are the manifests,
integers restored) and checked: exactly the planned objects, names and counts from the
registry, quotas from the norms, the policies, and the Kubernetes OpenAPI schema.

The Pulumi runtime is process-global, so the stacks run one after another, split over two
fresh worker processes (``ctfleet.lab.pulumi_mocks.run_stacks``) to keep the suite quick.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ctfleet.core.models import Tier
from ctfleet.stacks.generate import read_stack_file
from ctfleet.stacks.manifests import render, sort_key
from ctfleet.lab.pulumi_mocks import CaptureMocks, run_stack, run_stacks
from ctfleet.stacks.names import MONITORING_NAMESPACE, PKGCACHE_NAMESPACE, ct_namespace
from ctfleet.stacks.policies import NormOracle, check
from ctfleet.stacks.program import STACKS_DIR, load_inputs, main, plan_for

ROOT = Path(__file__).resolve().parent.parent
EXTRA = ["eci-gct-zagora-draa", "sdl-sale"]


@pytest.fixture(scope="module")
def inputs():
    return load_inputs()


def stack_config(name: str) -> dict:
    return read_stack_file(ROOT / STACKS_DIR / f"Pulumi.{name}.yaml")[0]


@pytest.fixture(scope="module")
def captured(inputs):
    names = [n for n, r in inputs.stacks.items() if r.tier in ("national", "sdr")] + EXTRA
    assert len(names) == 15
    return {c.stack: c for c in run_stacks([(n, stack_config(n)) for n in names], workers=2)}


def test_the_program_declares_exactly_the_plan(inputs, captured):
    for name, cap in captured.items():
        declared = sorted(cap.manifests, key=sort_key)
        assert declared == render(plan_for(inputs, name, stack_config(name))), name


def test_names_and_counts_against_the_registry(inputs, captured):
    for name, cap in captured.items():
        ref = inputs.stacks[name]
        namespaces = sorted(o["metadata"]["name"] for o in cap.manifests if o["kind"] == "Namespace")
        if ref.tier == "sdr":
            hosted = [c for c, ct in inputs.registry.cts.items() if ct.region_code == ref.unit and Tier.SDR in ct.tiers]
            expected = sorted([ct_namespace(c) for c in hosted] + [MONITORING_NAMESPACE, PKGCACHE_NAMESPACE])
        elif ref.tier == "national":
            expected = sorted(["ctfleet-monitoring"] + [f"nat-{p.slug}" for p in inputs.hosting.platforms])
        elif ref.tier == "eci":
            expected = [ref.unit.lower()]
        else:
            expected = [ct_namespace(ref.unit)]
        assert namespaces == expected, name
        types = Counter(r.type for r in cap.registrations)
        tier_type = {"national": "NationalCloud", "sdr": "RegionalCloud", "eci": "GroupingHosting", "sdl": "SdlHosting"}[ref.tier]
        assert types[f"ctfleet:tier:{tier_type}"] == 1
        assert types["ctfleet:hosting:Tenant"] == len(expected)
        assert types["kubernetes:core/v1:Namespace"] == types["kubernetes:core/v1:ResourceQuota"] == len(expected)
        assert types["kubernetes:core/v1:LimitRange"] == types["kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"] == len(expected)
        assert types["ctfleet:system:App"] == {"national": 1, "sdr": 3}.get(ref.tier, 0)
        [provider] = cap.of_type("pulumi:providers:kubernetes")
        assert provider.inputs == {"context": name}
    total = sum(len(c.manifests) for c in captured.values())
    assert total > 9_000


def test_quotas_equal_the_norms(inputs, captured):
    n = 0
    for cap in captured.values():
        quotas = {o["metadata"]["namespace"]: o["spec"]["hard"] for o in cap.manifests if o["kind"] == "ResourceQuota"}
        for ns in (o for o in cap.manifests if o["kind"] == "Namespace"):
            code = ns["metadata"]["labels"].get("ctfleet.ma/ct-code")
            if not code:
                continue
            r = inputs.norms.resolve(inputs.registry.cts[code])
            hard = quotas[ns["metadata"]["name"]]
            assert float(hard["limits.cpu"]) == r["HST-1"].value
            assert hard["limits.memory"] == hard["requests.memory"] == f"{r['HST-2'].value}Gi"
            assert hard["requests.storage"] == f"{r['HST-3'].value}Gi"
            assert hard["pods"] == str(r["HST-4"].value)
            n += 1
    assert n == 1590 + 1


def test_captured_objects_satisfy_the_policies(inputs, captured):
    oracle = NormOracle(inputs.registry, inputs.norms, inputs.hosting)
    assert {name: [str(v) for v in check(c.manifests, oracle)] for name, c in captured.items()} == {n: [] for n in captured}


def test_every_captured_object_passes_the_kubernetes_schema(captured):
    from ctfleet.stacks.schema import K8S_VERSION, validator

    v = validator(K8S_VERSION)
    checked, bad = 0, []
    for name, cap in captured.items():
        for o in cap.manifests:
            checked += 1
            errors = v.errors(o)
            if errors:
                bad.append((name, o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"], errors))
    assert bad == []
    assert checked == sum(len(c.manifests) for c in captured.values()) > 9_000


def test_integers_are_restored(captured):
    dep = next(o for o in captured["sdr-oriental"].manifests if o["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 1 and isinstance(dep["spec"]["replicas"], int)
    port = dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert isinstance(port, int)


def test_render_to_directory_mode(inputs, tmp_path):
    cfg = stack_config("sdl-sale") | {"ctfleet:kubernetes": {"renderYamlToDirectory": str(tmp_path / "rendered")}}
    cap = run_stack("sdl-sale", cfg, lambda: main(inputs))
    [provider] = cap.of_type("pulumi:providers:kubernetes")
    assert provider.inputs == {"renderYamlToDirectory": str(tmp_path / "rendered")}
    assert len(cap.manifests) == 7


def test_bad_config_fails_before_any_resource(inputs):
    from ctfleet.stacks.config import StackConfigErrors

    mocks = CaptureMocks()
    cfg = stack_config("sdr-oriental") | {"ctfleet:images": {"collector": "collector"}}
    with pytest.raises(StackConfigErrors) as exc:
        run_stack("sdr-oriental", cfg, lambda: main(inputs), mocks=mocks)
    assert str(exc.value).splitlines() == [
        "3 problems in the stack config, no resource declared:",
        "  infra/stacks/Pulumi.sdr-oriental.yaml: ctfleet:images.collector: 'collector' is not an image reference with an explicit "
        "tag (valid: an image reference with an explicit tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0)",
        "  infra/stacks/Pulumi.sdr-oriental.yaml: ctfleet:images.prometheus: required key is missing for tier sdr (valid: an image "
        "reference with an explicit tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0)",
        "  infra/stacks/Pulumi.sdr-oriental.yaml: ctfleet:images.aptCacherNg: required key is missing for tier sdr (valid: an image "
        "reference with an explicit tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0)",
    ]
    assert mocks.registrations == []


def test_a_stack_that_names_no_unit_is_refused(inputs):
    mocks = CaptureMocks()
    with pytest.raises(Exception) as exc:
        run_stack("sdr-atlantis", stack_config("sdr-oriental"), lambda: main(inputs), mocks=mocks)
    assert "infra/stacks/Pulumi.sdr-atlantis.yaml: stack name: no hosting unit is called 'sdr-atlantis'" in str(exc.value)
    assert mocks.registrations == []


def test_the_entry_point_runs_as_the_engine_would(monkeypatch):
    """infra/__main__.py itself (what `pulumi up` executes), on a small stack."""
    import runpy

    import pulumi

    exported: list[str] = []
    monkeypatch.setattr(pulumi, "export", lambda name, value: exported.append(name))
    cap = run_stack("sdl-rabat", stack_config("sdl-rabat"), lambda: runpy.run_path(str(ROOT / "infra" / "__main__.py"),
                                                                                  run_name="__main__"))
    assert [o["metadata"]["name"] for o in cap.manifests if o["kind"] == "Namespace"] == ["ct-04-421-01-0"]
    assert exported == ["stack", "tier", "unit", "tenantNamespaces", "tenantCount", "quotaTotal", "notes"]
