"""Tenants' own NetworkPolicies within bounds: the exact CEL the stack emits, evaluated.

No Kubernetes API server can run here. The ValidatingAdmissionPolicy's variables,
validations and messages are evaluated as the API server would (variables first, then each
validation; a false one refuses the request with its message or messageExpression) by
cel-python (``celpy``), a pure-Python implementation of the CEL specification, over real
NetworkPolicy objects that validate against the Kubernetes 1.33 schema.

Kubernetes adds its own CEL libraries; the emitted expressions use one of them, the CIDR
library (``isCIDR``, ``cidr``, ``containsCIDR``). celpy does not have it, so the three
functions are given here with Python's ``ipaddress``, following the library's documented
behaviour; everything else is celpy's own standard CEL.
"""

from __future__ import annotations

import copy
import ipaddress

import celpy
import pytest
from celpy import celtypes

from ctfleet.stacks.generate import read_stack_file
from ctfleet.stacks.manifests import render
from ctfleet.stacks.program import STACKS_DIR, load_inputs, plan_for
from ctfleet.stacks.schema import K8S_VERSION, validator
from ctfleet.stacks.tenant_policies import (
    OWNER,
    admission_objects,
    bounds,
    out_of_bounds,
    policy_name,
)

STACK = "sdr-rabat-sale-kenitra"
NS = "ct-04-281-01-01"  # a CT tenant of the region's SDR stack
OTHER = "ct-04-281-01-05"  # another one
PLATFORMS = "10.0.1.0/24"


# Kubernetes' CEL CIDR library (k8s.io/apiserver/pkg/cel/library/cidr.go), for celpy
def _is_cidr(s):
    try:
        ipaddress.ip_network(str(s), strict=False)
        return celtypes.BoolType(True)
    except ValueError:
        return celtypes.BoolType(False)


def _cidr(s):
    return celtypes.StringType(str(ipaddress.ip_network(str(s), strict=False)))


def _contains_cidr(outer, inner):
    a, b = ipaddress.ip_network(str(outer), strict=False), ipaddress.ip_network(str(inner), strict=False)
    return celtypes.BoolType(a.version == b.version and b.subnet_of(a))


K8S_LIBRARY = {"isCIDR": _is_cidr, "cidr": _cidr, "containsCIDR": _contains_cidr}


class ApiServerStandIn:
    """One ValidatingAdmissionPolicy's CEL, compiled once, evaluated per request as the API server does."""

    def __init__(self, vap: dict):
        env = celpy.Environment()
        prog = lambda text: env.program(env.compile(text), functions=K8S_LIBRARY)
        self.variables = [(v["name"], prog(v["expression"])) for v in vap["spec"]["variables"]]
        self.validations = [(prog(v["expression"]), v.get("message"), v.get("messageExpression") and prog(v["messageExpression"]))
                            for v in vap["spec"]["validations"]]

    def refusals(self, operation: str, namespace: str, groups: list[str] | None, obj: dict | None, old: dict | None) -> list[str]:
        user = {"username": "someone"} | ({"groups": groups} if groups is not None else {})  # None: a user with no groups (the field is then absent)
        act = {"object": celpy.json_to_cel(obj), "oldObject": celpy.json_to_cel(old),
               "request": celpy.json_to_cel({"operation": operation, "namespace": namespace, "userInfo": user}),
               "namespaceObject": celpy.json_to_cel({"metadata": {"name": namespace}})}
        variables: dict = {}
        for name, p in self.variables:
            variables[name] = p.evaluate(act | {"variables": celpy.json_to_cel({}) if not variables else celtypes.MapType(variables)})
            variables = {celtypes.StringType(k): v for k, v in variables.items()}
        act["variables"] = celtypes.MapType(variables)
        out = []
        for expr, message, message_expr in self.validations:
            result = expr.evaluate(act)
            assert isinstance(result, celtypes.BoolType), result  # an evaluation error would refuse too: none expected
            if not result:
                out.append(str(message_expr.evaluate(act)) if message_expr else message)
        return out


@pytest.fixture(scope="module")
def plan():
    inputs = load_inputs()
    raw = read_stack_file(inputs.root / STACKS_DIR / f"Pulumi.{STACK}.yaml")[0]
    raw["ctfleet:platformCidrs"] = [PLATFORMS]
    return plan_for(inputs, STACK, raw)


@pytest.fixture(scope="module")
def emitted(plan):
    objs = admission_objects(plan)
    assert [o["kind"] for o in objs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    assert all(o in render(plan) for o in objs)  # what the stack declares
    return objs


@pytest.fixture(scope="module")
def server(emitted):
    return ApiServerStandIn(emitted[0])


TENANT = [f"{NS}:admins", "system:authenticated"]
DEPLOYER = ["system:masters", "system:authenticated"]


def netpol(name: str, ingress=None, egress=None, labels=None) -> dict:
    spec: dict = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "web"}}, "policyTypes": []}
    for key, rules in (("Ingress", ingress), ("Egress", egress)):
        if rules is not None:
            spec["policyTypes"].append(key)
            spec[key.lower()] = rules
    md = {"name": name, "namespace": NS}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": md, "spec": spec}


def ns_peer(name: str, **pods) -> dict:
    peer: dict = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
    if pods:
        peer["podSelector"] = {"matchLabels": pods}
    return peer


def tcp(*ports: int) -> list[dict]:
    return [{"protocol": "TCP", "port": p} for p in ports]


ALLOWED = {
    "same namespace, narrower than the stack's": netpol(
        "web", ingress=[{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "front"}}}], "ports": tcp(8080)}],
        egress=[{"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "db"}}}], "ports": tcp(5432)}]),
    "own namespace by name": netpol("own", ingress=[{"from": [ns_peer(NS)]}]),
    "one national platform's address, HTTPS": netpol("rokhas", egress=[{"to": [{"ipBlock": {"cidr": "10.0.1.17/32"}}], "ports": tcp(443)}]),
    "the platforms' block with an exception": netpol(
        "platforms", egress=[{"to": [{"ipBlock": {"cidr": PLATFORMS, "except": ["10.0.1.0/28"]}}], "ports": tcp(443)}]),
    "DNS, UDP only": netpol("dns", egress=[{"to": [ns_peer("kube-system", **{"k8s-app": "kube-dns"})],
                                            "ports": [{"protocol": "UDP", "port": 53}]}]),
    "the package cache": netpol("apt", egress=[{"to": [ns_peer("ctfleet-pkgcache", **{"app.kubernetes.io/name": "apt-cacher-ng"})],
                                                "ports": tcp(3142)}]),
    "from the ingress controller, one port": netpol("from-ingress", ingress=[{"from": [ns_peer("ingress-nginx")], "ports": tcp(8080)}]),
}

IPBLOCK = "egress ipBlock peers must be inside 10.0.1.0/24 on TCP/443 (0.0.0.0/0 and other tenants' addresses never)"
NAMESPACES = ("egress namespaceSelector peers may only name (by kubernetes.io/metadata.name) the tenant's own namespace; "
              "kube-system pods k8s-app=kube-dns on UDP/53,TCP/53; ctfleet-pkgcache pods app.kubernetes.io/name=apt-cacher-ng "
              "on TCP/3142: never another tenant's namespace")
INGRESS_NAMESPACES = ("ingress namespaceSelector peers may only name (by kubernetes.io/metadata.name) the tenant's own "
                      "namespace; ingress-nginx; ctfleet-monitoring pods app.kubernetes.io/name=prometheus: never another "
                      "tenant's namespace")
REFUSED = {
    "the whole Internet": (netpol("internet", egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": tcp(443)}]), IPBLOCK),
    "the platforms on SSH": (netpol("ssh", egress=[{"to": [{"ipBlock": {"cidr": PLATFORMS}}], "ports": tcp(22)}]), IPBLOCK),
    "the platforms on every port": (netpol("all-ports", egress=[{"to": [{"ipBlock": {"cidr": "10.0.1.17/32"}}]}]), IPBLOCK),
    "a block wider than the platforms'": (netpol("wider", egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/16"}}], "ports": tcp(443)}]),
                                          IPBLOCK),
    "a port range": (netpol("range", egress=[{"to": [{"ipBlock": {"cidr": PLATFORMS}}],
                                              "ports": [{"protocol": "TCP", "port": 443, "endPort": 8443}]}]), IPBLOCK),
    "another tenant's namespace (egress)": (netpol("neighbour", egress=[{"to": [ns_peer(OTHER)]}]), NAMESPACES),
    "another tenant's namespace (ingress)": (netpol("neighbour-in", ingress=[{"from": [ns_peer(OTHER)]}]), INGRESS_NAMESPACES),
    "every namespace": (netpol("everyone", egress=[{"to": [{"namespaceSelector": {}}], "ports": tcp(443)}]), NAMESPACES),
    "all of kube-system, not only DNS": (netpol("kube-system", egress=[{"to": [ns_peer("kube-system")], "ports": tcp(53)}]), NAMESPACES),
    "DNS on another port": (netpol("dns-8053", egress=[{"to": [ns_peer("kube-system", **{"k8s-app": "kube-dns"})], "ports": tcp(8053)}]),
                            NAMESPACES),
    "a rule without peers": (netpol("anywhere", egress=[{"ports": tcp(443)}]),
                             "every egress rule must name its peers in 'to': a rule without them allows every destination"),
    "an address block in ingress": (netpol("from-net", ingress=[{"from": [{"ipBlock": {"cidr": PLATFORMS}}], "ports": tcp(443)}]),
                                    ("ingress rules cannot name address blocks (ipBlock): the stack allows none "
                                     "(0.0.0.0/0 and other tenants' addresses never)")),
}


def test_the_objects_and_every_test_policy_pass_the_kubernetes_schema(emitted):
    v = validator(K8S_VERSION)
    objs = emitted + list(ALLOWED.values()) + [np for np, _ in REFUSED.values()]
    assert {o["metadata"]["name"]: v.errors(o) for o in objs} == {o["metadata"]["name"]: [] for o in objs}


def test_the_bounds_are_the_stacks_flows(plan, emitted):
    tenant = plan.tenant(NS)
    assert [f"{b.direction} {b.show()}" for b in bounds(tenant.flows)] == [
        "ingress own namespace", "egress own namespace", "egress kube-system pods k8s-app=kube-dns on UDP/53,TCP/53",
        "ingress ingress-nginx", "ingress ctfleet-monitoring pods app.kubernetes.io/name=prometheus",
        "egress ctfleet-pkgcache pods app.kubernetes.io/name=apt-cacher-ng on TCP/3142", f"egress {PLATFORMS} on TCP/443"]
    vap, binding = emitted
    assert vap["metadata"]["name"] == binding["spec"]["policyName"] == policy_name(STACK)
    assert binding["spec"]["validationActions"] == ["Deny"]


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_a_tenant_policy_within_bounds_is_admitted(server, plan, case):
    np = ALLOWED[case]
    assert server.refusals("CREATE", NS, TENANT, np, None) == []
    assert server.refusals("UPDATE", NS, TENANT, np, np) == []
    assert server.refusals("DELETE", NS, TENANT, None, np) == []
    assert out_of_bounds(np, bounds(plan.tenant(NS).flows), NS) == []


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_tenant_policy_out_of_bounds_is_refused_with_its_message(server, plan, case):
    np, message = REFUSED[case]
    assert server.refusals("CREATE", NS, TENANT, np, None) == [message]
    assert server.refusals("UPDATE", NS, TENANT, np, ALLOWED["own namespace by name"]) == [message]
    # the same bounds in Python (the policy pack) agree
    assert out_of_bounds(np, bounds(plan.tenant(NS).flows), NS) != []
    # whoever is not a tenant operator (the stack's deployer, an administrator) is not bounded by it
    assert server.refusals("CREATE", NS, DEPLOYER, np, None) == []


def test_the_stacks_own_policies_cannot_be_changed_or_deleted_by_a_tenant(server, plan):
    owned = [o for o in render(plan) if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == NS]
    assert sorted(o["metadata"]["name"] for o in owned) == ["allow-tenant-flows", "default-deny"]
    for np in owned:
        name = np["metadata"]["name"]
        assert server.refusals("DELETE", NS, TENANT, None, np) == [
            f"NetworkPolicy {name} belongs to stack {STACK}: tenants cannot delete it; add a policy of your own"]
        looser = copy.deepcopy(np)
        looser["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
        looser["spec"]["policyTypes"] = ["Egress"]
        refusals = server.refusals("UPDATE", NS, TENANT, looser, np)
        assert refusals[0] == f"NetworkPolicy {name} belongs to stack {STACK}: tenants cannot change it; add a policy of your own"
        # the stack itself (its deployer) still updates and deletes them
        assert server.refusals("DELETE", NS, DEPLOYER, None, np) == []
        assert server.refusals("UPDATE", NS, DEPLOYER, looser, np) == []
        # the stack's own rules are within the bounds: a tenant may write the same without the label
        mine = copy.deepcopy(np)
        del mine["metadata"]["labels"]
        assert server.refusals("CREATE", NS, TENANT, mine, None) == []
        assert out_of_bounds(np, bounds(plan.tenant(NS).flows), NS) == []


def test_a_tenant_cannot_label_its_policy_as_the_stacks(server):
    np = netpol("fake", ingress=[{"from": [ns_peer(NS)]}], labels={OWNER: STACK})
    assert server.refusals("CREATE", NS, TENANT, np, None) == [
        f"the label {OWNER} marks the stack's own NetworkPolicies: a tenant's policy cannot carry it"]


def test_the_stack_wide_operator_group_is_bounded_too(server):
    np, message = REFUSED["the whole Internet"]
    assert server.refusals("CREATE", NS, [f"{STACK}:operators"], np, None) == [message]
    # another namespace's admins group is not this namespace's tenant (RBAC refuses them anyway), nor a user without groups
    assert server.refusals("CREATE", NS, [f"{OTHER}:admins"], np, None) == []
    assert server.refusals("CREATE", NS, None, np, None) == []


def test_the_binding_selects_exactly_the_ct_tenants(plan, emitted):
    selector = emitted[1]["spec"]["matchResources"]["namespaceSelector"]

    def selects(labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in selector["matchLabels"].items()) and all(
            labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"])

    namespaces = [o for o in render(plan) if o["kind"] == "Namespace"]
    chosen = sorted(o["metadata"]["name"] for o in namespaces if selects(o["metadata"]["labels"]))
    assert chosen == sorted(t.namespace for t in plan.tenants if t.kind == "ct") and len(chosen) > 100
    assert NS in chosen and "ctfleet-monitoring" not in chosen


def test_operators_may_write_network_policies(plan):
    role = next(o for o in render(plan) if o["kind"] == "ClusterRole")
    rule = next(r for r in role["rules"] if "networkpolicies" in r["resources"])
    assert {"create", "update", "patch", "delete"} <= set(rule["verbs"])


PEERS = {
    "own pods": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "db"}}},
    "own namespace": ns_peer(NS),
    "another tenant": ns_peer(OTHER),
    "kube-system": ns_peer("kube-system"),
    "cluster DNS": ns_peer("kube-system", **{"k8s-app": "kube-dns"}),
    "package cache": ns_peer("ctfleet-pkgcache", **{"app.kubernetes.io/name": "apt-cacher-ng"}),
    "package cache namespace": ns_peer("ctfleet-pkgcache"),
    "ingress controller": ns_peer("ingress-nginx"),
    "prometheus": ns_peer("ctfleet-monitoring", **{"app.kubernetes.io/name": "prometheus"}),
    "every namespace": {"namespaceSelector": {}},
    "one platform": {"ipBlock": {"cidr": "10.0.1.17/32"}},
    "the platforms": {"ipBlock": {"cidr": PLATFORMS}},
    "the Internet": {"ipBlock": {"cidr": "0.0.0.0/0"}},
    "IPv6": {"ipBlock": {"cidr": "fd00::/64"}},
}
PORTS = {"all": None, "https": tcp(443), "dns": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
         "udp dns": [{"protocol": "UDP", "port": 53}], "cache": tcp(3142), "ssh": tcp(22), "named": tcp("https")}


def test_the_pack_and_the_admission_policy_agree_on_every_combination(server, plan):
    """The bounds in Python (policy pack) and in CEL (API server) give the same verdict, peer by peer and port by port."""
    bs = bounds(plan.tenant(NS).flows)
    verdicts = {True: 0, False: 0}
    for direction in ("ingress", "egress"):
        for peer_name, peer in PEERS.items():
            for ports_name, ports in PORTS.items():
                rule: dict = {"from" if direction == "ingress" else "to": [peer]}
                if ports:
                    rule["ports"] = ports
                np = netpol("combo", **{direction: [rule]})
                cel_ok = server.refusals("CREATE", NS, TENANT, np, None) == []
                assert cel_ok == (out_of_bounds(np, bs, NS) == []), (direction, peer_name, ports_name)
                verdicts[cel_ok] += 1
    # both verdicts occur often: the agreement is not all-refused or all-admitted
    assert verdicts[True] >= 30 and verdicts[False] >= 100, verdicts


def test_the_plan_shows_what_tenants_may_write():
    from typer.testing import CliRunner

    from ctfleet.cli.stacks import app

    r = CliRunner().invoke(app, ["plan", "sdl-sale"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert (f"tenants' own NetworkPolicies (ValidatingAdmissionPolicy {policy_name('sdl-sale')}): admitted only within "
            "ingress own namespace; egress own namespace; egress kube-system pods k8s-app=kube-dns on UDP/53,TCP/53; "
            "ingress ingress-nginx; the stack's policies cannot be changed") in text
