"""The policy pack under pulumi-policy's real analyzer, started as the Pulumi engine starts it.

``infra/policy/__main__.py`` runs in its own process and prints the port of its gRPC
analyzer server; the test talks to it with ``pulumi.runtime.proto``'s ``AnalyzerStub``:
``GetAnalyzerInfo``, ``Analyze`` (one resource, before it is created) and ``AnalyzeStack``
(all of them). Properties travel as protobuf Structs, so the policies receive them wrapped
in pulumi-policy's read-only proxies, as in a real preview or update — and unknown values
are the engine's own sentinels, as in a preview.
"""

from __future__ import annotations

import copy
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from ctfleet.stacks.config import validate_config
from ctfleet.stacks.generate import default_config
from ctfleet.stacks.manifests import render
from ctfleet.stacks.plan import plan_stack
from ctfleet.stacks.policies import RESOURCE_POLICIES, STACK_POLICIES
from ctfleet.stacks.program import load_inputs

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "infra" / "policy"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's unknown-string sentinel during a preview
NS = "ct-12-391-01-01"


@pytest.fixture(scope="module")
def analyzer():
    """The pack's analyzer server, started as the engine does (python __main__.py in the pack directory)."""
    import grpc
    from pulumi.runtime.proto import analyzer_pb2_grpc

    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-u", "__main__.py"], cwd=PACK, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline().decode().strip() if ready else ""
        assert line.isdigit(), f"the pack printed no port: {line!r} {proc.stderr.read1().decode() if not ready else ''}"
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def good():
    inputs = load_inputs()
    ref = inputs.stacks["sdr-dakhla-oued-ed-dahab"]
    cfg = validate_config(default_config(ref), ref.name, inputs.registry, "x")
    return render(plan_stack(ref, cfg, inputs.registry, inputs.norms, inputs.hosting))


def _type(o: dict) -> str:
    group = o["apiVersion"] if "/" in o["apiVersion"] else f"core/{o['apiVersion']}"
    return f"kubernetes:{group}:{o['kind']}"


def _urn(o: dict) -> str:
    md = o["metadata"]
    return f"urn:pulumi:sdr-dakhla-oued-ed-dahab::ctfleet::{_type(o)}::{md.get('namespace', '')}-{md['name']}"


def _struct(props: dict):
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(props)
    return s


def analyze(stub, o: dict):
    from pulumi.runtime.proto import analyzer_pb2

    # the options the program declares: namespaces and volume claims protected (ctfleet.stacks.components)
    options = analyzer_pb2.AnalyzerResourceOptions(protect=o["kind"] in ("Namespace", "PersistentVolumeClaim"))
    req = analyzer_pb2.AnalyzeRequest(type=_type(o), properties=_struct(o), urn=_urn(o), name=o["metadata"]["name"], options=options)
    return stub.Analyze(req)


def analyze_stack(stub, objs: list[dict]):
    from pulumi.runtime.proto import analyzer_pb2

    resources = [analyzer_pb2.AnalyzerResource(type=_type(o), properties=_struct(o), urn=_urn(o), name=o["metadata"]["name"])
                 for o in objs]
    resources.append(analyzer_pb2.AnalyzerResource(type="pulumi:providers:kubernetes", properties=_struct({"context": "x"}),
                                                   urn="urn:pulumi:s::ctfleet::pulumi:providers:kubernetes::k8s", name="k8s"))
    return stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources))


def _violations(resp, level: str) -> list[tuple[str, str]]:
    """(policy, message) of the diagnostics at ``level``; the analyzer prefixes each message with the policy's description."""
    from pulumi.runtime.proto import analyzer_pb2

    out = []
    for d in resp.diagnostics:
        if d.enforcementLevel == getattr(analyzer_pb2, level):
            head, sep, rest = d.message.partition("\n")
            out.append((d.policyName, rest if sep and head == d.description else d.message))
    return sorted(out)


def _mandatory(resp) -> list[tuple[str, str]]:
    return _violations(resp, "MANDATORY")


def _advisory(resp) -> list[tuple[str, str]]:
    return _violations(resp, "ADVISORY")


def _find(objs, kind, name, ns=None):
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name and o["metadata"].get("namespace") == ns)


def test_the_pack_declares_resource_and_stack_policies(analyzer):
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "ctfleet-tenancy"
    kinds = {p.name: p.policy_type for p in info.policies}
    assert kinds == {**{p: analyzer_pb2.POLICY_TYPE_RESOURCE for p in RESOURCE_POLICIES},
                     **{p: analyzer_pb2.POLICY_TYPE_STACK for p in STACK_POLICIES}}
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}


def test_the_whole_sdr_stack_passes_through_the_proxies(analyzer, good):
    """Every object of a regional stack, one by one and as a stack: no crash on the proxies, no violation."""
    resp = analyze_stack(analyzer, good)
    assert list(resp.diagnostics) == []
    for o in good:
        assert list(analyze(analyzer, o).diagnostics) == [], o["metadata"]


def test_a_wrong_tenant_is_rejected_through_the_analyzer(analyzer, good):
    objs = copy.deepcopy(good)
    ns = _find(objs, "Namespace", NS)
    ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
    del ns["metadata"]["labels"]["ctfleet.ma/segment"]
    objs.remove(_find(objs, "NetworkPolicy", "default-deny", NS))
    _find(objs, "ResourceQuota", "tenant-quota", NS)["spec"]["hard"]["limits.cpu"] = "12"
    urn = _urn(ns)

    resp = analyze(analyzer, ns)  # the resource policy, before the namespace is created
    assert _mandatory(resp) == [
        ("tenant-labels", f"Namespace/{NS}: Pod Security enforce level is 'privileged', the norm (HST-5) requires 'restricted'"),
        ("tenant-labels", f"Namespace/{NS}: label ctfleet.ma/segment is missing"),
    ]
    assert {d.urn for d in resp.diagnostics} == {urn}

    resp = analyze_stack(analyzer, objs)
    assert _mandatory(resp) == [
        ("quota-within-norm", f"ResourceQuota/{NS}/tenant-quota: cpu 12 cores exceeds the norm's 8 cores "
                              "(HST-1, standards/norms/segments/commune_100k_250k.yaml:10-13)"),
        ("tenant-default-deny", f"Namespace/{NS}: no NetworkPolicy denies all ingress and egress by default"),
    ]


def test_a_preview_with_unknowns_still_rejects_a_privileged_pod(analyzer, good):
    dep = copy.deepcopy(_find(good, "Deployment", "collector", "ctfleet-monitoring"))
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    c["image"] = UNKNOWN  # e.g. an image digest computed by another resource
    pod["serviceAccountName"] = UNKNOWN
    c["securityContext"]["privileged"] = True
    c["securityContext"]["runAsUser"] = UNKNOWN
    resp = analyze(analyzer, dep)
    assert _mandatory(resp) == [("no-privileged-pods", "Deployment/ctfleet-monitoring/collector: container collector is privileged")]


def test_a_preview_with_an_undecidable_unknown_is_reported_not_passed(analyzer, good):
    """Nothing known is wrong, but an unknown value decides: the engine's advisory 'cannot run during preview'."""
    dep = copy.deepcopy(_find(good, "Deployment", "collector", "ctfleet-monitoring"))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = UNKNOWN
    resp = analyze(analyzer, dep)
    assert _mandatory(resp) == []
    [(pid, message)] = _advisory(resp)
    assert pid == "no-privileged-pods"
    assert "during preview" in message and "containers[0].securityContext.privileged" in message

    # a known, compliant pod with an unknown image is simply accepted
    dep = copy.deepcopy(_find(good, "Deployment", "collector", "ctfleet-monitoring"))
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = UNKNOWN
    assert list(analyze(analyzer, dep).diagnostics) == []


def test_a_stack_policy_decides_on_known_values_in_a_preview(analyzer, good):
    objs = copy.deepcopy(good)
    for o in objs:  # every Deployment image unknown, as when images are built by the same update
        if o["kind"] == "Deployment":
            o["spec"]["template"]["spec"]["containers"][0]["image"] = UNKNOWN
    objs.remove(_find(objs, "ResourceQuota", "tenant-quota", NS))
    resp = analyze_stack(analyzer, objs)
    assert _mandatory(resp) == [("tenant-quota", f"Namespace/{NS}: no ResourceQuota")]


def test_an_allow_all_network_policy_is_rejected(analyzer, good):
    np = copy.deepcopy(_find(good, "NetworkPolicy", "allow-tenant-flows", NS))
    np["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})
    n = len(np["spec"]["egress"]) - 1
    assert _mandatory(analyze(analyzer, np)) == [
        ("no-allow-all", f"NetworkPolicy/{NS}/allow-tenant-flows: egress[{n}] allows {{'ipBlock': {{'cidr': '0.0.0.0/0'}}}} on every port")]


def test_unprotected_data_is_refused_unless_the_config_allows_it(analyzer, good):
    from pulumi.runtime.proto import analyzer_pb2

    def with_protect(o, protect):
        req = analyzer_pb2.AnalyzeRequest(type=_type(o), properties=_struct(o), urn=_urn(o), name=o["metadata"]["name"],
                                          options=analyzer_pb2.AnalyzerResourceOptions(protect=protect))
        return analyzer.Analyze(req)

    pvc = copy.deepcopy(_find(good, "PersistentVolumeClaim", "prometheus-data", "ctfleet-monitoring"))
    ns = copy.deepcopy(_find(good, "Namespace", NS))
    assert list(with_protect(pvc, True).diagnostics) == [] and list(with_protect(ns, True).diagnostics) == []
    why = ("is not protected: an update could delete or replace it with its data; declare it with protect, or set "
           "ctfleet:allowDestructiveChanges: true in the stack config for this update, after a backup")
    assert _mandatory(with_protect(pvc, False)) == [("data-protected", f"PersistentVolumeClaim/ctfleet-monitoring/prometheus-data: {why}")]
    assert _mandatory(with_protect(ns, False)) == [("data-protected", f"Namespace/{NS}: {why}")]
    ns["metadata"]["annotations"]["ctfleet.ma/destructive-changes-allowed"] = "true"  # what allowDestructiveChanges writes
    assert list(with_protect(ns, False).diagnostics) == []


def test_a_stack_policy_beyond_the_tenants_bounds_is_rejected(analyzer, good):
    """HTTPS to the whole Internet passes no-allow-all (it names a port) but not the bounds a tenant is held to."""
    objs = copy.deepcopy(good)
    np = _find(objs, "NetworkPolicy", "allow-tenant-flows", NS)
    np["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]})
    n = len(np["spec"]["egress"]) - 1
    assert _mandatory(analyze(analyzer, np)) == []
    assert _mandatory(analyze_stack(analyzer, objs)) == [
        ("tenant-network-bounds", f"NetworkPolicy/{NS}/allow-tenant-flows: egress[{n}] peer {{'ipBlock': {{'cidr': '0.0.0.0/0'}}}} "
                                  "is outside the tenant's bounds (tenants' policies are held to the same bounds in the cluster)")]
    objs = [o for o in copy.deepcopy(good) if o["kind"] != "ValidatingAdmissionPolicyBinding"]
    missing = [m for p, m in _mandatory(analyze_stack(analyzer, objs)) if p == "tenant-network-bounds"]
    assert len(missing) == sum(1 for o in objs if o["kind"] == "Namespace" and o["metadata"]["labels"]["ctfleet.ma/kind"] == "ct") > 10
    assert missing[0].endswith("no ValidatingAdmissionPolicy of the stack bounds the NetworkPolicies its tenant may write "
                               "(ctfleet.stacks.tenant_policies.admission_objects)")
