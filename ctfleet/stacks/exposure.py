"""Reachable services: how a stack publishes a workload outside the cluster (pure).

Chosen per stack in ``ctfleet:expose``, one entry per workload that may be published,
validated up front with the rest of the config (one error naming every bad key)::

    ctfleet:expose:
      prometheus:                        # the Prometheus API for the NOC's queries (KPIs travel by remote_write)
        kind: ingress
        host: prometheus.sdr-rsk.ma
        tlsSecret: prometheus-tls        # a kubernetes.io/tls Secret the operators create ...
        # certManagerIssuer: letsencrypt # ... or a cert-manager (Cluster)Issuer issues it
        ingressClass: nginx              # default nginx
        sourceRanges: [10.0.0.0/24]      # default: ctfleet:federationCidrs
      aptCacherNg:                       # communes fetch packages from the regional cache
        kind: loadBalancer               # a LoadBalancer Service on the cache's port (3142)
        sourceRanges: [10.4.0.0/16]      # default: ctfleet:siteCidrs

Each kind renders to Kubernetes objects (:func:`objects`):

- ``ingress``: an ``Ingress`` (``networking.k8s.io/v1``) for one host with TLS, always:
  from ``tlsSecret``, or from a cert-manager ``Certificate`` (``cert-manager.io/v1``) the
  stack declares beside it, whose Secret the Ingress then names. ``sourceRanges`` become the
  ingress-nginx allow-list annotation (other controllers: the stack notes it is not enforced);
  ``basicAuthSecret`` (ingress-nginx) asks for a user and password.
- ``loadBalancer``: a second Service, ``<app>-public``, of type LoadBalancer with
  ``loadBalancerSourceRanges`` and ``externalTrafficPolicy: Local`` (the client's address
  reaches the pod, so the namespace's NetworkPolicy can allow exactly ``sourceRanges``).
  The system tenant's quota then allows that one LoadBalancer (``infra/hosting.yaml``
  ``system.*.loadBalancers`` is the ceiling the policy pack checks).

Workloads other modules add (the data path's results endpoint and national receiver)
publish the same way: build an :class:`ExposurePlan` (:func:`plan_exposure`) and set it
as the app's ``expose``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict

from ctfleet.stacks.names import is_dns_label

Manifest = dict[str, Any]
Bad = Callable[..., None]

CERT_MANAGER_API = "cert-manager.io/v1"
NGINX_CLASSES = ("nginx",)  # ingress classes served by ingress-nginx (its annotations apply)
ALLOW_LIST = "nginx.ingress.kubernetes.io/whitelist-source-range"
HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$")
HOST_VALID = "a fully qualified DNS name in lower case, e.g. prometheus.sdr-rsk.ma"
KIND_VALID = "kind: ingress (host + tlsSecret or certManagerIssuer) or kind: loadBalancer (sourceRanges)"


class Exposure(BaseModel):
    """One workload's entry in ``ctfleet:expose`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ingress", "loadBalancer"]
    host: str | None = None
    path: str = "/"
    tlsSecret: str | None = None
    certManagerIssuer: str | None = None
    issuerKind: Literal["ClusterIssuer", "Issuer"] = "ClusterIssuer"
    ingressClass: str = "nginx"
    sourceRanges: list[str] | None = None  # None: the workload's default (siteCidrs, federationCidrs)
    basicAuthSecret: str | None = None


class Expose(BaseModel):
    """``ctfleet:expose``: the workloads a stack may publish, by their ``ctfleet:images`` key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prometheus: Exposure | None = None  # sdr: the regional Prometheus; national: the national one (receiver)
    aptCacherNg: Exposure | None = None  # sdr: the package cache

    def entries(self) -> dict[str, Exposure]:
        return {k: v for k, v in ((k, getattr(self, k)) for k in type(self).model_fields) if v is not None}


#: Which workload (the app's name in the plan) each ``ctfleet:expose`` key publishes, and on which tiers.
EXPOSABLE = {"prometheus": ("prometheus", ("sdr", "national")), "aptCacherNg": ("apt-cacher-ng", ("sdr",))}


@dataclass(frozen=True)
class ExposurePlan:
    """A resolved exposure of one app: what :func:`objects` renders."""

    kind: Literal["ingress", "loadBalancer"]
    source_ranges: tuple[str, ...]
    host: str | None = None
    path: str = "/"
    tls_secret: str | None = None  # the Secret the Ingress serves (given, or the Certificate's)
    issuer: str | None = None  # cert-manager issuer: a Certificate is declared
    issuer_kind: str = "ClusterIssuer"
    ingress_class: str = "nginx"
    basic_auth_secret: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()  # further Ingress annotations (e.g. backend protocol)

    def show(self) -> str:
        who = ", ".join(self.source_ranges) or "anyone"
        if self.kind == "loadBalancer":
            return f"LoadBalancer Service (from {who})"
        tls = f"cert-manager {self.issuer_kind} {self.issuer}" if self.issuer else f"Secret {self.tls_secret}"
        return f"https://{self.host}{self.path} (Ingress class {self.ingress_class}, TLS from {tls}, from {who})"


def plan_exposure(app: str, e: Exposure, default_ranges: list[str]) -> ExposurePlan:
    """The exposure of workload ``app`` from its validated config entry."""
    ranges = tuple(e.sourceRanges if e.sourceRanges is not None else default_ranges)
    if e.kind == "loadBalancer":
        return ExposurePlan("loadBalancer", ranges)
    secret = e.tlsSecret or f"{app}-tls"
    return ExposurePlan("ingress", ranges, e.host, e.path, secret, e.certManagerIssuer, e.issuerKind, e.ingressClass,
                        e.basicAuthSecret)


# ------------------------------------------------------------------ validation
def check_config(expose: Expose, tier: str, default_ranges: dict[str, list[str]], bad: Bad) -> None:
    """Every problem of ``ctfleet:expose`` for a stack of ``tier`` (``bad(loc, message, valid)``)."""
    for key, e in expose.entries().items():
        at = ("expose", key)
        app, tiers = EXPOSABLE[key]
        if tier not in tiers:
            bad(at, f"tier {tier} runs no {app}", f"expose it on a stack of tier {' or '.join(tiers)}")
            continue
        if e.kind == "ingress":
            _check_ingress(e, at, bad)
        else:
            for k in ("host", "tlsSecret", "certManagerIssuer", "basicAuthSecret"):
                if getattr(e, k) is not None:
                    bad(at + (k,), "applies to kind ingress only: a LoadBalancer Service passes TCP through to the workload",
                        KIND_VALID)
            if e.path != "/":
                bad(at + ("path",), "applies to kind ingress only", KIND_VALID)
            ranges = e.sourceRanges if e.sourceRanges is not None else default_ranges.get(key, [])
            if not ranges:
                bad(at + ("sourceRanges",), "a LoadBalancer without source ranges is open to every address",
                    "the networks that may connect, e.g. [10.4.0.0/16] (default: "
                    + ("ctfleet:siteCidrs" if key == "aptCacherNg" else "ctfleet:federationCidrs") + ")")
        for i, cidr in enumerate(e.sourceRanges or []):
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                bad(at + ("sourceRanges", i), f"{cidr!r} is not a network address ({exc})", "a CIDR such as 10.4.0.0/16")
                continue
            if net.prefixlen == 0:
                bad(at + ("sourceRanges", i), f"{cidr!r} lets every address in", "the networks that may connect, e.g. 10.4.0.0/16")


def _check_ingress(e: Exposure, at: tuple, bad: Bad) -> None:
    if e.host is None:
        bad(at + ("host",), "required key is missing for kind ingress", HOST_VALID)
    elif not HOST.match(e.host):
        bad(at + ("host",), f"{e.host!r} is not a DNS name", HOST_VALID)
    if (e.tlsSecret is None) == (e.certManagerIssuer is None):
        bad(at, "an Ingress needs its TLS certificate from exactly one of tlsSecret and certManagerIssuer"
                + (", not both" if e.tlsSecret else ""),
            "tlsSecret: NAME (a kubernetes.io/tls Secret you create in the namespace) or certManagerIssuer: NAME "
            "(a cert-manager ClusterIssuer, or an Issuer with issuerKind: Issuer)")
    for k in ("tlsSecret", "certManagerIssuer", "basicAuthSecret"):
        v = getattr(e, k)
        if v is not None and not _is_name(v):
            bad(at + (k,), f"{v!r} is not an object name", "a DNS-1123 subdomain such as prometheus-tls")
    if not is_dns_label(e.ingressClass.replace(".", "-")):
        bad(at + ("ingressClass",), f"{e.ingressClass!r} is not an IngressClass name", "e.g. nginx")
    if not e.path.startswith("/") or any(c.isspace() for c in e.path):
        bad(at + ("path",), f"{e.path!r} is not a URL path", "a path starting with /, e.g. / or /api/v1/write")
    if e.basicAuthSecret is not None and e.ingressClass not in NGINX_CLASSES:
        bad(at + ("basicAuthSecret",), f"basic authentication is an ingress-nginx annotation; class {e.ingressClass!r} ignores it",
            "ingressClass: nginx, or authenticate in the workload")


def _is_name(value: str) -> bool:
    return len(value) <= 253 and all(is_dns_label(p) for p in value.split("."))


def notes(app: str, x: ExposurePlan) -> list[str]:
    """What an operator must know before ``pulumi up`` about one exposure."""
    out = []
    if x.kind == "ingress" and x.issuer is None:
        out.append(f"{app} is published at https://{x.host}{x.path}: create the kubernetes.io/tls Secret {x.tls_secret} first")
    if x.kind == "ingress" and x.source_ranges and x.ingress_class not in NGINX_CLASSES:
        out.append(f"{app}: ingress class {x.ingress_class!r} is not ingress-nginx, so the source ranges "
                   f"{', '.join(x.source_ranges)} are not enforced by the Ingress")
    return out


# ------------------------------------------------------------------ objects
def objects(name: str, namespace: str, port_name: str, port: int, x: ExposurePlan, labels: dict[str, str]) -> list[Manifest]:
    """The objects publishing Service ``name`` (port ``port_name``/``port``) as ``x`` says."""
    md = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if x.kind == "loadBalancer":
        spec: dict[str, Any] = {
            "type": "LoadBalancer",
            # the client's address reaches the pod, so the NetworkPolicy's ipBlock decides
            "externalTrafficPolicy": "Local",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
        }
        if x.source_ranges:
            spec["loadBalancerSourceRanges"] = list(x.source_ranges)
        return [{"apiVersion": "v1", "kind": "Service", "metadata": md | {"name": f"{name}-public"}, "spec": spec}]
    annotations = dict(x.annotations)
    if x.ingress_class in NGINX_CLASSES:
        annotations["nginx.ingress.kubernetes.io/ssl-redirect"] = "true"
        if x.source_ranges:
            annotations[ALLOW_LIST] = ",".join(x.source_ranges)
        if x.basic_auth_secret:
            annotations |= {"nginx.ingress.kubernetes.io/auth-type": "basic",
                            "nginx.ingress.kubernetes.io/auth-secret": x.basic_auth_secret,
                            "nginx.ingress.kubernetes.io/auth-realm": f"ctfleet {name}"}
    out: list[Manifest] = []
    if x.issuer:
        out.append({"apiVersion": CERT_MANAGER_API, "kind": "Certificate", "metadata": dict(md),
                    "spec": {"secretName": x.tls_secret, "dnsNames": [x.host],
                             "issuerRef": {"name": x.issuer, "kind": x.issuer_kind, "group": "cert-manager.io"}}})
    ingress: Manifest = {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": md | ({"annotations": annotations} if annotations else {}),
        "spec": {
            "ingressClassName": x.ingress_class,
            "tls": [{"hosts": [x.host], "secretName": x.tls_secret}],
            "rules": [{"host": x.host, "http": {"paths": [
                {"path": x.path, "pathType": "Prefix",
                 "backend": {"service": {"name": name, "port": {"name": port_name}}}}]}}],
        },
    }
    out.append(ingress)
    return out


# A small JSON schema of the cert-manager Certificate this module emits (the Kubernetes
# OpenAPI schemas do not cover CRDs): the fields used, with cert-manager v1's types;
# unknown fields are refused, as the strict Kubernetes schemas do.
CERTIFICATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": CERT_MANAGER_API},
        "kind": {"const": "Certificate"},
        "metadata": {"type": "object", "required": ["name", "namespace"],
                     "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}},
                     "additionalProperties": False},
        "spec": {
            "type": "object", "required": ["secretName", "issuerRef"], "additionalProperties": False,
            "properties": {
                "secretName": {"type": "string", "minLength": 1},
                "dnsNames": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "issuerRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                              "properties": {"name": {"type": "string", "minLength": 1},
                                             "kind": {"enum": ["ClusterIssuer", "Issuer"]},
                                             "group": {"type": "string"}}},
            },
        },
    },
}
