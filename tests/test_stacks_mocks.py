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

from ctfleet.stacks.generate import read_stack_file
from ctfleet.stacks.manifests import render, sort_key
from ctfleet.lab.pulumi_mocks import CaptureMocks, kubeconfig_text, run_stack, run_stacks, with_kubeconfig
from ctfleet.stacks.names import MONITORING_NAMESPACE, PKGCACHE_NAMESPACE, RESULTS_NAMESPACE, ct_namespace, tenant_home
from ctfleet.stacks.policies import NormOracle, check
from ctfleet.stacks.program import STACKS_DIR, load_inputs, main, plan_for

ROOT = Path(__file__).resolve().parent.parent
EXTRA = ["eci-gct-zagora-draa", "sdl-sale"]


@pytest.fixture(scope="module")
def inputs():
    return load_inputs()


def stack_config(name: str) -> dict:
    return read_stack_file(ROOT / STACKS_DIR / f"Pulumi.{name}.yaml")[0]


def deploy_config(name: str) -> dict:
    """The committed config plus the secret kubeconfig an operator sets before `pulumi up`."""
    return with_kubeconfig(stack_config(name))


@pytest.fixture(scope="module")
def captured(inputs):
    names = [n for n, r in inputs.stacks.items() if r.tier in ("national", "sdr")] + EXTRA
    assert len(names) == 15
    return {c.stack: c for c in run_stacks([(n, deploy_config(n)) for n in names], workers=2)}


def test_the_program_declares_exactly_the_plan(inputs, captured):
    for name, cap in captured.items():
        declared = sorted(cap.manifests, key=sort_key)
        assert declared == render(plan_for(inputs, name, stack_config(name))), name


def test_names_and_counts_against_the_registry(inputs, captured):
    for name, cap in captured.items():
        ref = inputs.stacks[name]
        namespaces = sorted(o["metadata"]["name"] for o in cap.manifests if o["kind"] == "Namespace")
        if ref.tier == "sdr":
            hosted = [c for c, ct in inputs.registry.cts.items() if ct.region_code == ref.unit and tenant_home(ct) == "sdr"]
            expected = sorted([ct_namespace(c) for c in hosted] + [MONITORING_NAMESPACE, PKGCACHE_NAMESPACE, RESULTS_NAMESPACE])
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
        assert types["ctfleet:system:Workload"] == {"national": 1, "sdr": 7}.get(ref.tier, 0)
        [provider] = cap.of_type("pulumi:providers:kubernetes")
        assert provider.inputs["context"] == name and provider.inputs["clusterIdentifier"] == name
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
    assert n == 1547 + 1  # the SDR stacks' CTs and sdl-sale's


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
    assert provider.inputs["renderYamlToDirectory"] == str(tmp_path / "rendered")
    assert provider.inputs["kubeconfig"] == "" and "context" not in provider.inputs
    # ClusterRole, ValidatingAdmissionPolicy + binding, Namespace, quota, limits, 2 NetworkPolicies, RoleBinding
    assert len(cap.manifests) == 9


def test_stacks_hosting_ct_tenants_declare_the_network_policy_bounds(captured):
    """Each stack with CT tenants declares its ValidatingAdmissionPolicy and binding (tests/test_stacks_tenant_netpol.py
    evaluates their CEL); the national stack, which hosts none, declares neither."""
    from ctfleet.stacks.tenant_policies import policy_name

    for name, cap in captured.items():
        kinds = {o["kind"]: o for o in cap.manifests if o["apiVersion"] == "admissionregistration.k8s.io/v1"}
        if name == "national":
            assert kinds == {}
            continue
        assert sorted(kinds) == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"], name
        assert kinds["ValidatingAdmissionPolicyBinding"]["spec"]["policyName"] == policy_name(name)
        assert kinds["ValidatingAdmissionPolicy"]["metadata"]["name"] == policy_name(name)


def test_bad_config_fails_before_any_resource(inputs):
    from ctfleet.stacks.config import StackConfigErrors

    mocks = CaptureMocks()
    cfg = deploy_config("sdr-oriental") | {"ctfleet:images": {"collector": "collector"}}
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
        run_stack("sdr-atlantis", deploy_config("sdr-oriental"), lambda: main(inputs), mocks=mocks)
    assert "infra/stacks/Pulumi.sdr-atlantis.yaml: stack name: no hosting unit is called 'sdr-atlantis'" in str(exc.value)
    assert mocks.registrations == []


def test_the_entry_point_runs_as_the_engine_would(monkeypatch):
    """infra/__main__.py itself (what `pulumi up` executes), on a small stack."""
    import runpy

    import pulumi

    exported: list[str] = []
    monkeypatch.setattr(pulumi, "export", lambda name, value: exported.append(name))
    cap = run_stack("sdl-rabat", deploy_config("sdl-rabat"), lambda: runpy.run_path(str(ROOT / "infra" / "__main__.py"),
                                                                                  run_name="__main__"))
    assert [o["metadata"]["name"] for o in cap.manifests if o["kind"] == "Namespace"] == ["ct-04-421-01-0"]
    assert exported == ["stack", "tier", "unit", "tenantNamespaces", "tenantCount", "quotaTotal", "notes", "dataInventory"]


# ------------------------------------------------------------------ the cluster: explicit, from the secret config
def test_the_kubeconfig_is_the_stack_secret_and_the_environment_changes_nothing(inputs, monkeypatch, tmp_path):
    cfg = deploy_config("sdl-sale")
    cap = run_stack("sdl-sale", cfg, lambda: main(inputs))
    [provider] = cap.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",  # a secret
                                             "value": kubeconfig_text("sdl-sale")}
    assert provider.inputs["context"] == "sdl-sale" and provider.inputs["clusterIdentifier"] == "sdl-sale"

    other = tmp_path / "teammate-kubeconfig"
    other.write_text(kubeconfig_text("somebody-elses-cluster"))
    monkeypatch.setenv("KUBECONFIG", str(other))
    monkeypatch.setenv("PULUMI_K8S_ENABLE_SERVER_SIDE_APPLY", "false")
    monkeypatch.setenv("PULUMI_K8S_DELETE_UNREACHABLE", "true")
    again = run_stack("sdl-sale", cfg, lambda: main(inputs))
    [provider2] = again.of_type("pulumi:providers:kubernetes")
    assert provider2.inputs == provider.inputs
    render = run_stack("sdl-sale", stack_config("sdl-sale") | {"ctfleet:kubernetes": {"renderYamlToDirectory": "out"}},
                       lambda: main(inputs))
    assert render.of_type("pulumi:providers:kubernetes")[0].inputs["kubeconfig"] == ""


def test_the_kubeconfig_stays_a_secret(inputs, monkeypatch):
    """What the SDK sends the engine for the provider: the kubeconfig wrapped as a secret, so state encrypts it."""
    from google.protobuf import json_format
    from pulumi.runtime import mocks as runtime_mocks

    sent = {}
    real = runtime_mocks.MockMonitor.RegisterResource

    def register(self, request):
        if request.type == "pulumi:providers:kubernetes":
            sent.update(json_format.MessageToDict(request.object))
        return real(self, request)

    monkeypatch.setattr(runtime_mocks.MockMonitor, "RegisterResource", register)
    run_stack("sdl-sale", deploy_config("sdl-sale"), lambda: main(inputs))
    secret_sig = "1b47061264138c4ac30d75fd1eb44270"  # pulumi's wire signature of a secret value
    assert sent["kubeconfig"]["4dabf18193072939515e22adb298388d"] == secret_sig
    assert sent["kubeconfig"]["value"] == kubeconfig_text("sdl-sale")
    assert sent["context"] == "sdl-sale"  # not secret: names, not credentials


def test_a_plain_text_or_missing_kubeconfig_is_refused_before_any_resource(inputs):
    from ctfleet.stacks.config import StackConfigErrors

    text = kubeconfig_text("sdl-sale")
    for cfg, secret, expected in [
        (stack_config("sdl-sale") | {"ctfleet:kubeconfig": text}, [],
         "ctfleet:kubeconfig: is stored in plain text in the stack config: a kubeconfig holds the cluster's credentials"),
        (stack_config("sdl-sale"), [],
         "ctfleet:kubeconfig: required key is missing to deploy: the provider never falls back to $KUBECONFIG or ~/.kube/config"),
        (stack_config("sdl-sale") | {"ctfleet:kubeconfig": kubeconfig_text("other")}, ["ctfleet:kubeconfig"],
         "ctfleet:kubeconfig: has no context 'sdl-sale' (ctfleet:kubernetes.context); it has: other"),
    ]:
        mocks = CaptureMocks()
        with pytest.raises(StackConfigErrors) as exc:
            run_stack("sdl-sale", cfg, lambda: main(inputs), mocks=mocks, secret_keys=secret)
        assert expected in str(exc.value)
        assert "test-token" not in str(exc.value)  # never the secret's text
        assert mocks.registrations == []


# ------------------------------------------------------------------ data safety
def _register_requests(monkeypatch) -> list:
    from pulumi.runtime import mocks as runtime_mocks

    seen = []
    real = runtime_mocks.MockMonitor.RegisterResource

    def register(self, request):
        seen.append(request)
        return real(self, request)

    monkeypatch.setattr(runtime_mocks.MockMonitor, "RegisterResource", register)
    return seen


def test_namespaces_and_volumes_are_protected_and_retained(inputs, monkeypatch):
    seen = _register_requests(monkeypatch)
    run_stack("sdr-dakhla-oued-ed-dahab", deploy_config("sdr-dakhla-oued-ed-dahab"), lambda: main(inputs))
    data = [r for r in seen if r.type in ("kubernetes:core/v1:Namespace", "kubernetes:core/v1:PersistentVolumeClaim")]
    tenants = plan_for(inputs, "sdr-dakhla-oued-ed-dahab", stack_config("sdr-dakhla-oued-ed-dahab")).tenants
    assert len([r for r in data if r.type.endswith("Namespace")]) == len(tenants)
    assert len([r for r in data if r.type.endswith("PersistentVolumeClaim")]) == 4  # Prometheus, cache, Alertmanager, PostgreSQL
    assert all(r.protect and r.retainOnDelete for r in data)
    assert not any(r.protect for r in seen if r.type == "kubernetes:apps/v1:Deployment")
    # a renamed component keeps its former type as an alias: its URN, and the objects under it, stay the same
    workloads = [r for r in seen if r.type == "ctfleet:system:Workload"]
    assert len(workloads) == 7
    for r in workloads:
        assert [a.spec.type for a in r.aliases] == ["ctfleet:system:App"], r.name

    seen.clear()
    allowed = deploy_config("sdr-dakhla-oued-ed-dahab") | {"ctfleet:allowDestructiveChanges": True}
    cap = run_stack("sdr-dakhla-oued-ed-dahab", allowed, lambda: main(inputs))
    data = [r for r in seen if r.type in ("kubernetes:core/v1:Namespace", "kubernetes:core/v1:PersistentVolumeClaim")]
    assert data and all(not r.protect and r.retainOnDelete for r in data)
    assert all(o["metadata"]["annotations"]["ctfleet.ma/destructive-changes-allowed"] == "true"
               for o in cap.manifests if o["kind"] in ("Namespace", "PersistentVolumeClaim"))
