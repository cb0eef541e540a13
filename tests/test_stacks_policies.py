"""Policies as code: a deliberately wrong tenant trips every policy, each with a clear message."""

from __future__ import annotations

import copy

import pytest

from ctfleet.stacks.config import validate_config
from ctfleet.stacks.crossguard import resource_manifest
from ctfleet.stacks.generate import default_config
from ctfleet.stacks.manifests import render
from ctfleet.stacks.plan import plan_stack
from ctfleet.stacks.policies import POLICIES, NormOracle, check
from ctfleet.stacks.program import load_inputs

NS = "ct-12-391-01-01"  # Dakhla, commune of 100,000-250,000: 8 cores, 32 GiB, 1000 GiB, 100 pods


@pytest.fixture(scope="module")
def inputs():
    return load_inputs()


@pytest.fixture(scope="module")
def oracle(inputs):
    return NormOracle(inputs.registry, inputs.norms, inputs.hosting)


@pytest.fixture(scope="module")
def good(inputs):
    ref = inputs.stacks["sdr-dakhla-oued-ed-dahab"]
    cfg = validate_config(default_config(ref), ref.name, inputs.registry, "x")
    return render(plan_stack(ref, cfg, inputs.registry, inputs.norms, inputs.hosting))


def _find(objs, kind, name, ns=None):
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name
                and o["metadata"].get("namespace") == ns)


def test_the_good_stack_passes(good, oracle):
    assert check(good, oracle) == []


def test_a_deliberately_wrong_tenant_trips_each_policy(good, oracle):
    objs = copy.deepcopy(good)
    ns = _find(objs, "Namespace", NS)
    labels = ns["metadata"]["labels"]
    del labels["ctfleet.ma/segment"]
    labels["ctfleet.ma/lot"] = "lot 1"  # not a valid label value
    labels["pod-security.kubernetes.io/enforce"] = "privileged"
    objs.remove(_find(objs, "NetworkPolicy", "default-deny", NS))
    _find(objs, "ResourceQuota", "tenant-quota", NS)["spec"]["hard"].update({"limits.cpu": "12", "requests.memory": "64Gi"})
    open_rule = _find(objs, "NetworkPolicy", "allow-tenant-flows", NS)
    open_rule["spec"]["ingress"][1] = {}
    dep = _find(objs, "Deployment", "collector", "ctfleet-monitoring")
    pod = dep["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    pod["hostPID"] = True
    pod["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}})
    c = pod["containers"][0]
    c["securityContext"] = {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}}
    pod["securityContext"].pop("runAsNonRoot")
    # a second tenant with no quota at all, and one whose quota forgets pods
    objs.remove(_find(objs, "ResourceQuota", "tenant-quota", "ct-12"))
    del _find(objs, "ResourceQuota", "tenant-quota", "ct-12-066")["spec"]["hard"]["pods"]

    found = sorted(str(v) for v in check(objs, oracle))
    assert found == sorted([
        "[tenant-labels] Namespace/ct-12-391-01-01: label ctfleet.ma/segment is missing",
        "[tenant-labels] Namespace/ct-12-391-01-01: label ctfleet.ma/lot='lot 1' is not a valid Kubernetes label",
        "[tenant-labels] Namespace/ct-12-391-01-01: Pod Security enforce level is 'privileged', the norm (HST-5) requires 'restricted'",
        "[quota-within-norm] ResourceQuota/ct-12-391-01-01/tenant-quota: cpu 12 cores exceeds the norm's 8 cores "
        "(HST-1, standards/norms/segments/commune_100k_250k.yaml:10-13)",
        "[quota-within-norm] ResourceQuota/ct-12-391-01-01/tenant-quota: memory 64 GiB exceeds the norm's 32 GiB "
        "(HST-2, standards/norms/segments/commune_100k_250k.yaml:10-13)",
        "[tenant-default-deny] Namespace/ct-12-391-01-01: no NetworkPolicy denies all ingress and egress by default",
        "[no-allow-all] NetworkPolicy/ct-12-391-01-01/allow-tenant-flows: ingress[1] has no 'from': it allows every peer on every port",
        "[tenant-network-bounds] NetworkPolicy/ct-12-391-01-01/allow-tenant-flows: ingress[1] names no peers: it allows every "
        "source (tenants' policies are held to the same bounds in the cluster)",
        "[no-privileged-pods] Deployment/ctfleet-monitoring/collector: hostNetwork is true",
        "[no-privileged-pods] Deployment/ctfleet-monitoring/collector: hostPID is true",
        "[no-privileged-pods] Deployment/ctfleet-monitoring/collector: volume docker mounts a host path",
        "[no-privileged-pods] Deployment/ctfleet-monitoring/collector: container collector is privileged",
        "[no-privileged-pods] Deployment/ctfleet-monitoring/collector: container collector does not set allowPrivilegeEscalation: false",
        "[no-privileged-pods] Deployment/ctfleet-monitoring/collector: container collector may run as root (runAsNonRoot is not true)",
        "[no-privileged-pods] Deployment/ctfleet-monitoring/collector: container collector runs as uid 0",
        "[no-privileged-pods] Deployment/ctfleet-monitoring/collector: container collector does not drop ALL capabilities",
        "[no-privileged-pods] Deployment/ctfleet-monitoring/collector: container collector adds capabilities ['NET_ADMIN']",
        "[tenant-quota] Namespace/ct-12: no ResourceQuota",
        "[tenant-quota] ResourceQuota/ct-12-066/tenant-quota: does not cap pods",
        "[quota-within-norm] ResourceQuota/ct-12-066/tenant-quota: pods unlimited exceeds the norm's 100 "
        "(HST-4, standards/norms/segments/council.yaml:11-14)",
    ])
    # data-protected judges the protect option, which only the engine sends (tests/test_stacks_analyzer.py)
    assert {v.policy for v in check(objs, oracle)} == set(POLICIES) - {"data-protected"}


def test_unknown_tenants_and_wide_rules(good, oracle):
    objs = copy.deepcopy(good)
    _find(objs, "Namespace", NS)["metadata"]["labels"]["ctfleet.ma/ct-code"] = "12.999.01.01"
    egress = _find(objs, "NetworkPolicy", "allow-tenant-flows", NS)
    egress["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}, {"to": [{"namespaceSelector": {}}], "ports": [{"port": 53}]}]
    found = sorted(str(v) for v in check(objs, oracle))
    assert found == sorted([
        "[tenant-labels] Namespace/ct-12-391-01-01: cannot tell the tenant's norm: CT code '12.999.01.01' is not in the registry",
        "[no-allow-all] NetworkPolicy/ct-12-391-01-01/allow-tenant-flows: egress[0] allows {'ipBlock': {'cidr': '0.0.0.0/0'}} on every port",
        "[tenant-network-bounds] NetworkPolicy/ct-12-391-01-01/allow-tenant-flows: egress[0] peer {'ipBlock': {'cidr': '0.0.0.0/0'}} "
        "is outside the tenant's bounds (tenants' policies are held to the same bounds in the cluster)",
        # port 53 to every namespace passes no-allow-all (it names a port), not the bounds tenants are held to
        "[tenant-network-bounds] NetworkPolicy/ct-12-391-01-01/allow-tenant-flows: egress[1] peer {'namespaceSelector': {}} "
        "is outside the tenant's bounds (tenants' policies are held to the same bounds in the cluster)",
    ])


def test_a_norm_without_default_deny_is_respected(inputs, good, oracle):
    """HST-6 false for a CT (a per-CT override) means its tenant is not required to deny by default."""
    from ctfleet.stacks.policies import Expectation, Quota

    class Lenient:
        def expect(self, labels):
            e = oracle.expect(labels)
            return Expectation(e.quota, e.psa_level, False, e.source) if labels.get("ctfleet.ma/ct-code") == "12.391.01.01" else e

    objs = [o for o in good if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "default-deny"
                                    and o["metadata"]["namespace"] == NS)]
    assert check(objs, Lenient()) == []
    assert Quota(1, 1, 1, 1) + Quota(1, 2, 3, 4) == Quota(2, 3, 4, 5)


def test_crossguard_maps_resources_back_to_manifests():
    """The pack sees Pulumi resource types and properties; it maps them back to manifests (real analyzer: test_stacks_analyzer)."""
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    from ctfleet.stacks.crossguard import plain
    from ctfleet.stacks.policies import UNKNOWN

    assert resource_manifest("kubernetes:core/v1:Namespace", {"metadata": {"name": "x"}}) == \
        {"metadata": {"name": "x"}, "apiVersion": "v1", "kind": "Namespace"}
    assert resource_manifest("pulumi:providers:kubernetes", {}) is None
    proxied = unknown_checking_proxy({"metadata": {"name": "x", "labels": UNKNOWN_STRING_VALUE}, "spec": {"l": [1, UNKNOWN_STRING_VALUE]}})
    assert plain(proxied) == {"metadata": {"name": "x", "labels": UNKNOWN}, "spec": {"l": [1, UNKNOWN]}}
    assert [] + plain(proxied["spec"]["l"]) == [1, UNKNOWN]  # the bug the pack had: list + _ListProxy


def test_crossguard_pack_declares_one_policy_per_id():
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

    from ctfleet.stacks.crossguard import policies
    from ctfleet.stacks.policies import RESOURCE_POLICIES, STACK_POLICIES

    pack = policies(lambda: None)  # type: ignore[arg-type,return-value]
    assert sorted(p.name for p in pack) == sorted(POLICIES)
    assert {p.name for p in pack if isinstance(p, ResourceValidationPolicy)} == set(RESOURCE_POLICIES)
    assert {p.name for p in pack if isinstance(p, StackValidationPolicy)} == set(STACK_POLICIES)
    assert {p.enforcement_level for p in pack} == {EnforcementLevel.MANDATORY}
