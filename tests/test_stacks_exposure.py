"""Reachable services (ctfleet:expose): Ingress with TLS (a Secret or cert-manager), or a LoadBalancer.

Config errors are checked with their text; rendered objects against the Kubernetes 1.33
OpenAPI schema (Ingress, Service) and the module's own schema of the cert-manager
Certificate; the policies over the whole stack; and the Pulumi program under mocks
declares exactly the planned objects, the Certificate as a custom resource.
"""

from __future__ import annotations

import copy

import jsonschema
import pytest

from ctfleet.core.errors import InputErrors
from ctfleet.lab.pulumi_mocks import run_stacks, with_kubeconfig
from ctfleet.stacks.config import validate_config
from ctfleet.stacks.exposure import CERTIFICATE_SCHEMA, NGINX_CLASSES
from ctfleet.stacks.manifests import render, sort_key
from ctfleet.stacks.names import MONITORING_NAMESPACE, PKGCACHE_NAMESPACE
from ctfleet.stacks.plan import APT_CACHER_PORT, PROMETHEUS_PORT
from ctfleet.stacks.policies import NormOracle, check
from ctfleet.stacks.program import load_inputs, plan_for
from ctfleet.stacks.schema import validator

STACK = "sdr-oriental"
SOURCE = f"infra/stacks/Pulumi.{STACK}.yaml"


@pytest.fixture(scope="module")
def inputs():
    return load_inputs()


def sdr(**expose) -> dict:
    raw = {
        "ctfleet:tier": "sdr",
        "ctfleet:unit": "02",
        "ctfleet:kubernetes": {"context": STACK},
        "ctfleet:images": {"collector": "registry.ctfleet.ma/ctfleet/collector:0.1.0",
                           "prometheus": "quay.io/prometheus/prometheus:v3.5.0",
                           "aptCacherNg": "registry.ctfleet.ma/ctfleet/apt-cacher-ng:3.7.4"},
        "ctfleet:operatorGroups": ["sdr-oriental:operators"],
        "ctfleet:siteCidrs": ["10.2.0.0/16"],
        "ctfleet:federationCidrs": ["10.0.0.0/24"],
        "ctfleet:demo": True,  # the generated fleet (the data path refuses it otherwise)
    }
    if expose:
        raw["ctfleet:expose"] = expose
    return raw


def errors(inputs, raw: dict, stack: str = STACK) -> list[str]:
    with pytest.raises(InputErrors) as exc:
        validate_config(raw, stack, inputs.registry, f"infra/stacks/Pulumi.{stack}.yaml")
    return str(exc.value).splitlines()[1:]


def objects_of(inputs, raw: dict, stack: str = STACK) -> tuple:
    plan = plan_for(inputs, stack, raw)
    return plan, render(plan)


def find(objs, kind, namespace, name):
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["namespace"] == namespace and o["metadata"]["name"] == name)


# ------------------------------------------------------------------ validation
def test_bad_exposures_are_named_in_one_error(inputs):
    lines = errors(inputs, sdr(
        prometheus={"kind": "ingress", "tlsSecret": "prometheus-tls", "certManagerIssuer": "letsencrypt"},
        aptCacherNg={"kind": "loadBalancer", "host": "apt.sdr-oriental.ma", "sourceRanges": ["10.2.0.0/8", "0.0.0.0/0"]}))
    assert lines == [
        f"  {SOURCE}: ctfleet:expose.prometheus.host: required key is missing for kind ingress "
        "(valid: a fully qualified DNS name in lower case, e.g. prometheus.sdr-rsk.ma)",
        f"  {SOURCE}: ctfleet:expose.prometheus: an Ingress needs its TLS certificate from exactly one of tlsSecret and "
        "certManagerIssuer, not both (valid: tlsSecret: NAME (a kubernetes.io/tls Secret you create in the namespace) or "
        "certManagerIssuer: NAME (a cert-manager ClusterIssuer, or an Issuer with issuerKind: Issuer))",
        f"  {SOURCE}: ctfleet:expose.aptCacherNg.host: applies to kind ingress only: a LoadBalancer Service passes TCP through "
        "to the workload (valid: kind: ingress (host + tlsSecret or certManagerIssuer) or kind: loadBalancer (sourceRanges))",
        f"  {SOURCE}: ctfleet:expose.aptCacherNg.sourceRanges[0]: '10.2.0.0/8' is not a network address "
        "(10.2.0.0/8 has host bits set) (valid: a CIDR such as 10.4.0.0/16)",
        f"  {SOURCE}: ctfleet:expose.aptCacherNg.sourceRanges[1]: '0.0.0.0/0' lets every address in "
        "(valid: the networks that may connect, e.g. 10.4.0.0/16)",
    ]


def test_exposure_checks_by_tier_kind_and_defaults(inputs):
    # a LoadBalancer with no ranges given and no siteCidrs to default to is open to the world: refused
    raw = sdr(aptCacherNg={"kind": "loadBalancer"})
    raw["ctfleet:siteCidrs"] = []
    assert errors(inputs, raw) == [
        f"  {SOURCE}: ctfleet:expose.aptCacherNg.sourceRanges: a LoadBalancer without source ranges is open to every "
        "address (valid: the networks that may connect, e.g. [10.4.0.0/16] (default: ctfleet:siteCidrs))"]
    [line] = errors(inputs, sdr(prometheus={"kind": "nodePort"}))
    assert "ctfleet:expose.prometheus.kind: Input should be 'ingress' or 'loadBalancer', got 'nodePort'" in line
    [line] = errors(inputs, sdr(grafana={"kind": "ingress"}))
    assert "ctfleet:expose.grafana: Extra inputs are not permitted" in line
    [line] = errors(inputs, sdr(prometheus={"kind": "ingress", "host": "Prom_1.example", "tlsSecret": "t"}))
    assert "ctfleet:expose.prometheus.host: 'Prom_1.example' is not a DNS name" in line
    [line] = errors(inputs, sdr(prometheus={"kind": "ingress", "host": "p.sdr.ma", "tlsSecret": "t", "ingressClass": "traefik",
                                            "basicAuthSecret": "users"}))
    assert "basic authentication is an ingress-nginx annotation; class 'traefik' ignores it" in line
    national = {"ctfleet:tier": "national", "ctfleet:kubernetes": {"context": "national"},
                "ctfleet:images": {"prometheus": "quay.io/prometheus/prometheus:v3.5.0"},
                "ctfleet:operatorGroups": ["dgct:operators"],
                "ctfleet:expose": {"aptCacherNg": {"kind": "loadBalancer", "sourceRanges": ["10.0.0.0/8"]}}}
    assert errors(inputs, national, "national") == [
        "  infra/stacks/Pulumi.national.yaml: ctfleet:expose.aptCacherNg: tier national runs no apt-cacher-ng "
        "(valid: expose it on a stack of tier sdr)"]


# ------------------------------------------------------------------ rendering
def test_prometheus_behind_an_ingress_with_a_tls_secret(inputs):
    plan, objs = objects_of(inputs, sdr(prometheus={"kind": "ingress", "host": "prometheus.sdr-oriental.ma",
                                                    "tlsSecret": "prometheus-tls"}))
    ing = find(objs, "Ingress", MONITORING_NAMESPACE, "prometheus")
    assert validator().errors(ing) == []
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["prometheus.sdr-oriental.ma"], "secretName": "prometheus-tls"}]
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = find(objs, "Service", MONITORING_NAMESPACE, backend["name"])  # the Ingress reaches the app's own Service
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    # only the federation networks (default: ctfleet:federationCidrs) pass ingress-nginx
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/whitelist-source-range"] == "10.0.0.0/24"
    assert not any(o["kind"] == "Certificate" for o in objs)
    # the ingress controller may reach Prometheus's port through the namespace's default deny
    allow = find(objs, "NetworkPolicy", MONITORING_NAMESPACE, "allow-prometheus")
    assert {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "ports": [{"protocol": "TCP", "port": PROMETHEUS_PORT}]} in allow["spec"]["ingress"]
    assert any("create the kubernetes.io/tls Secret prometheus-tls first" in n for n in plan.notes)
    assert check(objs, NormOracle(inputs.registry, inputs.norms, inputs.hosting)) == []


def test_cert_manager_certificate_and_its_schema(inputs):
    _, objs = objects_of(inputs, sdr(prometheus={"kind": "ingress", "host": "prometheus.sdr-oriental.ma",
                                                 "certManagerIssuer": "letsencrypt", "basicAuthSecret": "prometheus-users"}))
    cert = find(objs, "Certificate", MONITORING_NAMESPACE, "prometheus")
    ing = find(objs, "Ingress", MONITORING_NAMESPACE, "prometheus")
    assert validator().errors(ing) == []
    jsonschema.validate(cert, CERTIFICATE_SCHEMA)  # the Kubernetes schemas have no CRDs: our own, of what we emit
    assert cert["spec"] == {"secretName": "prometheus-tls", "dnsNames": ["prometheus.sdr-oriental.ma"],
                            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer", "group": "cert-manager.io"}}
    assert ing["spec"]["tls"][0]["secretName"] == cert["spec"]["secretName"]  # the Ingress serves what cert-manager issues
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-secret"] == "prometheus-users"
    # the schema is strict: a misspelt field or a wrong issuer kind fails
    for mutate in (lambda c: c["spec"].__setitem__("dnsName", ["x"]),
                   lambda c: c["spec"]["issuerRef"].__setitem__("kind", "Issuers"),
                   lambda c: c["spec"].pop("secretName")):
        bad = copy.deepcopy(cert)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, CERTIFICATE_SCHEMA)


def test_package_cache_behind_a_load_balancer(inputs):
    oracle = NormOracle(inputs.registry, inputs.norms, inputs.hosting)
    _, objs = objects_of(inputs, sdr(aptCacherNg={"kind": "loadBalancer"}))
    lb = find(objs, "Service", PKGCACHE_NAMESPACE, "apt-cacher-ng-public")
    assert validator().errors(lb) == []
    assert lb["spec"]["type"] == "LoadBalancer" and lb["spec"]["externalTrafficPolicy"] == "Local"
    assert lb["spec"]["loadBalancerSourceRanges"] == ["10.2.0.0/16"]  # default: ctfleet:siteCidrs
    assert lb["spec"]["ports"] == [{"name": "http", "port": APT_CACHER_PORT, "targetPort": "http", "protocol": "TCP"}]
    # quota: the package cache may hold this one LoadBalancer, the monitoring namespace none
    assert find(objs, "ResourceQuota", PKGCACHE_NAMESPACE, "tenant-quota")["spec"]["hard"]["services.loadbalancers"] == "1"
    assert find(objs, "ResourceQuota", MONITORING_NAMESPACE, "tenant-quota")["spec"]["hard"]["services.loadbalancers"] == "0"
    # the clients' addresses (kept by externalTrafficPolicy: Local) pass the namespace's default deny
    rules = find(objs, "NetworkPolicy", PKGCACHE_NAMESPACE, "allow-apt-cacher-ng")["spec"]["ingress"]
    assert {"from": [{"ipBlock": {"cidr": "10.2.0.0/16"}}], "ports": [{"protocol": "TCP", "port": APT_CACHER_PORT}]} in rules
    assert check(objs, oracle) == []
    # explicit ranges win over the default
    _, objs2 = objects_of(inputs, sdr(aptCacherNg={"kind": "loadBalancer", "sourceRanges": ["10.2.8.0/24"]}))
    assert find(objs2, "Service", PKGCACHE_NAMESPACE, "apt-cacher-ng-public")["spec"]["loadBalancerSourceRanges"] == ["10.2.8.0/24"]
    # the policy pack's ceiling comes from infra/hosting.yaml, not from the plan: a second LoadBalancer is refused
    bad = copy.deepcopy(objs)
    find(bad, "ResourceQuota", PKGCACHE_NAMESPACE, "tenant-quota")["spec"]["hard"]["services.loadbalancers"] = "2"
    assert [str(v) for v in check(bad, oracle)] == [
        "[quota-within-norm] ResourceQuota/ctfleet-pkgcache/tenant-quota: services.loadbalancers 2 exceeds 1 "
        "(infra/hosting.yaml (system.pkgcache))"]


def test_without_expose_nothing_is_published(inputs):
    _, objs = objects_of(inputs, sdr())
    assert not any(o["kind"] in ("Ingress", "Certificate") or o["spec"].get("type") == "LoadBalancer"
                   for o in objs if o["kind"] in ("Ingress", "Certificate", "Service"))
    assert all(o["spec"]["hard"]["services.loadbalancers"] == "0" for o in objs if o["kind"] == "ResourceQuota")
    assert "nginx" in NGINX_CLASSES


def test_the_program_declares_the_exposures(inputs):
    """Under Pulumi mocks: the Ingress, the Certificate (a CustomResource) and the LoadBalancer are declared as planned."""
    stack = "sdr-dakhla-oued-ed-dahab"
    raw = sdr(prometheus={"kind": "ingress", "host": "prometheus.sdr-dakhla.ma", "certManagerIssuer": "letsencrypt"},
              aptCacherNg={"kind": "loadBalancer"})
    raw |= {"ctfleet:unit": "12", "ctfleet:kubernetes": {"context": stack}}
    [cap] = run_stacks([(stack, with_kubeconfig(raw))])
    assert sorted(cap.manifests, key=sort_key) == render(plan_for(inputs, stack, raw))
    types = {r.type for r in cap.registrations}
    assert {"kubernetes:cert-manager.io/v1:Certificate", "kubernetes:networking.k8s.io/v1:Ingress"} <= types
    lbs = [r for r in cap.registrations if r.type == "kubernetes:core/v1:Service" and r.inputs["spec"]["type"] == "LoadBalancer"]
    assert [r.name for r in lbs] == ["ctfleet-pkgcache-apt-cacher-ng-service-apt-cacher-ng-public"]


def test_the_readme_example_is_a_valid_exposure(inputs):
    """infra/README.md's ctfleet:expose block, as an SDR team would paste it, plans and passes the policies."""
    import re

    from ruamel.yaml import YAML

    from conftest import ROOT

    text = (ROOT / "infra" / "README.md").read_text(encoding="utf-8")
    section = text.split("## Reachable services", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    expose = YAML(typ="safe").load(block)["ctfleet:expose"]
    plan, objs = objects_of(inputs, sdr(**expose))
    published = {a.name: a.expose.show() for a in plan.apps if a.expose}
    assert published == {
        "prometheus": "https://prometheus.sdr-rsk.ma/ (Ingress class nginx, TLS from cert-manager ClusterIssuer letsencrypt, "
                      "from 10.0.0.0/24)",
        "apt-cacher-ng": "LoadBalancer Service (from 10.2.0.0/16)"}
    assert {o["kind"] for o in objs} >= {"Ingress", "Certificate"}
    assert check(objs, NormOracle(inputs.registry, inputs.norms, inputs.hosting)) == []
