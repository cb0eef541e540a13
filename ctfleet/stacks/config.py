"""Stack configuration: the ``ctfleet:*`` keys of ``Pulumi.<stack>.yaml``, validated up front.

Every key is typed here, once; the program, ``ctfleet stacks plan`` and the generator use
this module. Validation is pure and reports every bad key in one :class:`InputErrors`
before any resource is declared::

    config:
      ctfleet:tier: sdr                       # national | sdr | eci | sdl
      ctfleet:unit: "04"                      # region code, grouping code or commune code (not for national)
      ctfleet:kubernetes:                     # exactly one of: context | renderYamlToDirectory
        context: sdr-rabat-sale-kenitra       # a context of the secret ctfleet:kubeconfig
        clusterIdentifier: sdr-rabat-sale-kenitra   # optional; default: the stack name
      ctfleet:kubeconfig:                     # pulumi config set --secret ctfleet:kubeconfig < kubeconfig.yaml
        secure: v1:...                        # never $KUBECONFIG, never a path on someone's machine
      ctfleet:images:                         # name:tag, by tier (sdr: collector, prometheus, aptCacherNg)
        collector: registry.ctfleet.ma/ctfleet/collector:0.1.0      # built from infra/images/
        prometheus: quay.io/prometheus/prometheus:v3.5.0
        aptCacherNg: registry.ctfleet.ma/ctfleet/apt-cacher-ng:3.7.4
      ctfleet:operatorGroups:                 # groups bound to each tenant; "{namespace}" expands per tenant
        - sdr-rabat-sale-kenitra:operators
      ctfleet:ingressNamespace: ingress-nginx
      ctfleet:siteCidrs: [10.4.0.0/16]        # sdr: commune networks (collector targets, package-cache clients)
      ctfleet:federationCidrs: [10.0.0.0/24]  # sdr: the national cloud's network (remote_write of the KPIs goes there)
      ctfleet:platformCidrs: [10.0.1.0/24]    # sdr/eci/sdl: the national cloud's ingress (tenants' HTTPS egress)
      ctfleet:storageClass: standard          # optional
      ctfleet:prometheusRetention: 30d
      ctfleet:development: false              # true: a test cluster (localhost registries allowed)
      ctfleet:allowDestructiveChanges: false  # true: this update may replace volumes or remove tenants
      ctfleet:profile: profiles/sdr-04.yaml   # sdr: the region's profile; its fleet is what the collector polls
      ctfleet:demo: false                     # sdr: true accepts the generated (simulated) fleet
      ctfleet:dataPath:                       # see ctfleet/stacks/dataplane.py
        resultsHost: results.sdr-rsk.ma       # sdr: the results endpoint (Ingress, TLS)
        nationalWriteUrl: https://metrics.dgct.ma/api/v1/write   # sdr: remote_write target
        receiverHost: metrics.dgct.ma         # national: the remote-write receiver's Ingress
      ctfleet:expose:                         # optional: publish a workload (ctfleet/stacks/exposure.py)
        prometheus: {kind: ingress, host: prometheus.sdr-rsk.ma, tlsSecret: prometheus-tls}
        aptCacherNg: {kind: loadBalancer}     # sourceRanges default: ctfleet:siteCidrs
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Callable, Literal, Mapping

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ctfleet.core.errors import InputErrors, Problem, one_of
from ctfleet.core.registry import Registry
from ctfleet.core.secrets import Secret
from ctfleet.core.yamlio import loc_text
from ctfleet.stacks.exposure import Expose, check_config as check_exposure
from ctfleet.stacks.names import TIERS, is_dns_label, stack_index

NAMESPACE = "ctfleet"  # the Pulumi config namespace (the project name)

# name[:port]/path:tag[@sha256:digest] with an explicit tag other than "latest": a stack
# must say which version it deploys, so that `pulumi up` twice deploys the same thing.
IMAGE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(\.[a-z0-9-]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                   r":(?!latest(@|$))[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[0-9a-f]{64})?$")
IMAGE_VALID = "an image reference with an explicit tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0"
PLACEHOLDERS = {"namespace", "stack"}
# registries only the machine that pushed can reach (a development cluster on that machine)
LOCAL_REGISTRY = re.compile(r"^(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?/")
KUBECONFIG_VALID = "the kubeconfig's contents as a stack secret: pulumi config set --secret ctfleet:kubeconfig < sdr-kubeconfig.yaml"

IMAGES_BY_TIER = {"national": ("prometheus",), "sdr": ("collector", "prometheus", "aptCacherNg"), "eci": (), "sdl": ()}
# Upstream images of the data path (ctfleet.stacks.dataplane), pinned; ctfleet:images overrides them (e.g. a mirror)
DEFAULT_IMAGES = {"postgres": "docker.io/library/postgres:16.9-bookworm",
                  "alertmanager": "quay.io/prometheus/alertmanager:v0.28.1",
                  "grafana": "docker.io/grafana/grafana:12.0.2"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KubernetesTarget(_Strict):
    context: str | None = None  # a context of the secret ctfleet:kubeconfig
    # The provider's identity: only a change of this replaces the provider (and so every
    # object); a teammate's context name or a re-issued kubeconfig is an update. Default: the stack.
    clusterIdentifier: str | None = None
    renderYamlToDirectory: str | None = None


@dataclass(frozen=True)
class KubeconfigSecret:
    """The stack's kubeconfig, a secret: its text (decrypted by the engine), or None when read
    still encrypted from the file (``ctfleet stacks plan`` never decrypts)."""

    value: Secret | None

    def __str__(self) -> str:
        return "<secret>" if self.value is not None else "<secret, encrypted>"


class Images(_Strict):
    collector: str | None = None  # also runs the results service (the same ctfleet package)
    prometheus: str | None = None
    aptCacherNg: str | None = None
    postgres: str | None = None  # the region's results database
    alertmanager: str | None = None
    grafana: str | None = None


class DataPath(_Strict):
    """Where the data path is published (ctfleet.stacks.dataplane); TLS and credentials are
    Secrets the operators create (named in infra/README.md), never values here."""

    ingressClass: str = "nginx"
    resultsHost: str | None = None  # sdr: the results endpoint (technicians' and ansible-pull batches)
    nationalWriteUrl: str | None = None  # sdr: the national Prometheus's remote-write URL
    alertWebhook: str | None = None  # sdr: the regional NOC's relay the Alertmanager posts to
    grafanaHost: str | None = None  # sdr: optional Ingress for Grafana
    receiverHost: str | None = None  # national: the remote-write receiver's host
    # sdr: cluster name -> host:port of the kube-state-metrics of each cluster hosting the region's CT
    # tenants (default: this cluster's kube-state-metrics.kube-system.svc:8080; {} scrapes none)
    kubeStateMetrics: dict[str, str] | None = None


class StackConfig(_Strict):
    tier: Literal["national", "sdr", "eci", "sdl"]
    unit: str | None = None
    kubernetes: KubernetesTarget
    images: Images = Images()
    operatorGroups: list[str] = Field(min_length=1)
    ingressNamespace: str = "ingress-nginx"
    siteCidrs: list[str] = []
    federationCidrs: list[str] = []
    platformCidrs: list[str] = []  # where tenants reach the national platforms (HTTPS egress allow-list)
    storageClass: str | None = None
    prometheusRetention: str = Field(default="30d", pattern=r"^[0-9]+[hdwy]$")
    development: bool = False  # a test cluster: images may come from a localhost registry
    allowDestructiveChanges: bool = False  # let this update replace volumes or remove tenants (after a backup)
    profile: str | None = None  # sdr: the regional profile (region + imported fleet), relative to the project root
    demo: bool = False  # sdr: a demonstration cluster: the generated (simulated) fleet is accepted
    dataPath: DataPath = DataPath()
    expose: Expose = Expose()  # workloads published outside the cluster (ctfleet.stacks.exposure)
    kubeconfig: Any = Field(default=None, exclude=True)  # KubeconfigSecret, set by validate_config (never from data)

    def image(self, name: str) -> str:
        value = getattr(self.images, name) or DEFAULT_IMAGES.get(name)
        assert value, f"ctfleet:images.{name} was validated as required"
        return value


def strip_namespace(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ctfleet:*`` keys without their prefix; JSON strings (how Pulumi passes objects) decoded.

    Keys of other namespaces (``kubernetes:*``, ``pulumi:*``) are not ours and are ignored.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        ns, sep, name = key.partition(":")
        if not sep or ns != NAMESPACE:
            continue
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # left as text; the type check names the key
        out[name] = value
    return out


class StackConfigErrors(InputErrors):
    """Every problem of one stack config; raised before any resource is declared."""

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the stack config, no resource declared:"
        return "\n".join([head, *("  " + str(p) for p in self.problems)])


def validate_config(raw: Mapping[str, Any], stack: str, registry: Registry, source: str,
                    line_of: Callable[[tuple], int | None] | None = None,
                    secret_keys: frozenset[str] | set[str] = frozenset(), deploying: bool = False) -> StackConfig:
    """Validate the config of ``stack`` (keys with their ``ctfleet:`` prefix).

    ``secret_keys``: the keys the engine says are secrets (their values arrive decrypted);
    a value read from the file as ``{secure: ...}`` is a secret still encrypted.
    ``deploying``: the Pulumi program is about to declare the provider, so the secret
    kubeconfig must be there (``ctfleet stacks plan`` only notes its absence).

    Raises one :class:`StackConfigErrors` (an :class:`InputErrors`) listing every bad key, e.g.::

        2 problems in the stack config, no resource declared:
          infra/stacks/Pulumi.sdr-oriental.yaml: ctfleet:images.collector: required key is missing for tier sdr (valid: ...)
          infra/stacks/Pulumi.sdr-oriental.yaml: ctfleet:siteCidrs[0]: '10.2.0.0/8' is not a network address ...

    No message ever shows a secret's value.
    """
    data = strip_namespace(raw)
    problems: list[Problem] = []

    def bad(loc: tuple, message: str, valid: str | None = None) -> None:
        line = line_of(loc) if line_of else None
        problems.append(Problem(source, message, line=line, key=f"{NAMESPACE}:{loc_text(loc)}", valid=valid))

    kubeconfig = _take_secrets(data, {k.removeprefix(f"{NAMESPACE}:") for k in secret_keys}, bad)
    _drop_unknown_keys(data, bad)
    try:
        cfg = StackConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err["type"] == "missing":
                bad(loc, "required key is missing", _VALID.get(loc[0]))
            elif err["type"] == "literal_error" and loc == ("tier",):
                bad(loc, f"{err['input']!r} is not a tier", one_of(TIERS))
            else:
                bad(loc, f"{err['msg']}, got {err.get('input')!r}", _VALID.get(loc[0]))
        raise StackConfigErrors(problems) from None
    cfg = cfg.model_copy(update={"kubeconfig": kubeconfig})

    _check_unit(cfg, stack, registry, bad)
    _check_target(cfg, deploying, bad)
    _check_images(cfg, bad)
    _check_groups_and_networks(cfg, bad)
    from ctfleet.stacks.dataplane import check_config as _check_data_path

    _check_data_path(cfg, bad)
    check_exposure(cfg.expose, cfg.tier, {"aptCacherNg": cfg.siteCidrs, "prometheus": cfg.federationCidrs}, bad)
    if cfg.storageClass is not None and not is_dns_label(cfg.storageClass.replace(".", "-")):
        bad(("storageClass",), f"{cfg.storageClass!r} is not a storage class name", "a DNS-1123 subdomain such as standard")
    if problems:
        raise StackConfigErrors(problems)
    return cfg


Bad = Callable[..., None]


def _take_secrets(data: dict[str, Any], secret_keys: set[str], bad: Bad) -> KubeconfigSecret | None:
    """Remove the secret-bearing keys from ``data``; the kubeconfig as a :class:`KubeconfigSecret`.

    Only ``ctfleet:kubeconfig`` may be (and must be) a secret: any other encrypted value is
    refused, since nothing else can be validated without decrypting it.
    """
    kubeconfig = None
    for key in list(data):
        value = data[key]
        encrypted = isinstance(value, dict) and set(value) == {"secure"}
        if key == "kubeconfig":
            del data[key]
            if encrypted:
                kubeconfig = KubeconfigSecret(None)
            elif isinstance(value, str) and key in secret_keys:
                kubeconfig = KubeconfigSecret(Secret(value))
            else:
                bad(("kubeconfig",), "is stored in plain text in the stack config: a kubeconfig holds the cluster's credentials",
                    KUBECONFIG_VALID)
        elif encrypted or key in secret_keys:
            del data[key]
            bad((key,), "is a secret, but only ctfleet:kubeconfig is read as a secret", "a plain value (pulumi config set, without --secret)")
    return kubeconfig


#: Keys an older config may still carry: what replaced them.
REMOVED_KEYS = {
    "federate": ("is no longer read: the national Prometheus does not scrape the regions (federation loses samples "
                 "across a WAN outage); each region remote-writes its KPIs to the national receiver",
                 "remove it; set ctfleet:dataPath.receiverHost on the national stack and ctfleet:dataPath.nationalWriteUrl "
                 "on each regional one"),
}


def _drop_unknown_keys(data: dict[str, Any], bad: Bad) -> None:
    """Unknown keys are reported and dropped first, so the rest is still checked in the same pass."""
    for key in list(data):
        if key in REMOVED_KEYS:
            bad((key,), REMOVED_KEYS[key][0], REMOVED_KEYS[key][1])
            del data[key]
        elif key not in StackConfig.model_fields:
            bad((key,), "unknown key", one_of(sorted(f"{NAMESPACE}:{k}" for k in StackConfig.model_fields)))
            del data[key]
    for key, model in (("kubernetes", KubernetesTarget), ("images", Images), ("dataPath", DataPath)):
        if isinstance(data.get(key), dict):
            data[key] = dict(data[key])
            for sub in list(data[key]):
                if sub not in model.model_fields:
                    if key == "kubernetes" and sub == "kubeconfig":
                        bad((key, sub), "the kubeconfig is no longer a path or text here: it is the stack's secret "
                                        "ctfleet:kubeconfig, so every teammate deploys to the same cluster", KUBECONFIG_VALID)
                    else:
                        bad((key, sub), "unknown key", one_of(sorted(model.model_fields)))
                    del data[key][sub]


def _check_unit(cfg: StackConfig, stack: str, registry: Registry, bad: Bad) -> None:
    """The unit must exist and match the stack being run."""
    refs = stack_index(registry)
    tier = cfg.tier
    expected = None
    if tier == "national":
        if cfg.unit is not None:
            bad(("unit",), "the national stack provisions no region, grouping or commune; remove this key")
        else:
            expected = "national"
    elif cfg.unit is None:
        bad(("unit",), f"required key is missing for tier {tier}", _UNIT_VALID[tier])
    else:
        match = next((r for r in refs.values() if r.tier == tier and r.unit == cfg.unit), None)
        if match is None:
            bad(("unit",), f"{cfg.unit!r} is not a {_UNIT_WHAT[tier]} of the registry", _unit_choices(tier, registry, refs))
        else:
            expected = match.name
    if expected is not None and expected != stack:
        bad(("unit",) if tier != "national" else ("tier",),
            f"this config provisions stack {expected!r}, but the stack being run is {stack!r}",
            f"select stack {expected} (pulumi stack select {expected}), or regenerate with `ctfleet stacks generate`")


def _check_target(cfg: StackConfig, deploying: bool, bad: Bad) -> None:
    """Where the provider deploys: a context of the secret kubeconfig, or rendered YAML."""
    k = cfg.kubernetes
    if k.renderYamlToDirectory and (k.context or cfg.kubeconfig):
        bad(("kubernetes",), "renderYamlToDirectory cannot be combined with a context or a kubeconfig: one provider either "
                             "renders manifests or deploys them", _VALID["kubernetes"])
    elif not k.renderYamlToDirectory and not k.context:
        bad(("kubernetes",), "no target cluster: set context (a context of the secret ctfleet:kubeconfig) or "
                             "renderYamlToDirectory (write manifests for GitOps)", _VALID["kubernetes"])
    elif k.context and cfg.kubeconfig is None and deploying:
        bad(("kubeconfig",), "required key is missing to deploy: the provider never falls back to $KUBECONFIG or ~/.kube/config",
            KUBECONFIG_VALID)
    elif k.context and cfg.kubeconfig is not None and cfg.kubeconfig.value is not None:
        problem = kubeconfig_problem(cfg.kubeconfig.value.reveal(), k.context)
        if problem:
            bad(("kubeconfig",), problem, KUBECONFIG_VALID)
    if k.clusterIdentifier is not None and not k.clusterIdentifier.strip():
        bad(("kubernetes", "clusterIdentifier"), "empty cluster identifier", "a name for the cluster that never changes, e.g. the stack name")


def kubeconfig_problem(text: str, context: str) -> str | None:
    """What is wrong with a kubeconfig's text for ``context``, without ever quoting the text."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe", pure=True).load(text)
    except YAMLError:
        return "is not a kubeconfig (not YAML); set the file's contents, not its path"
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), list):
        return "is not a kubeconfig (no contexts); set the file's contents, not its path"
    contexts = {c.get("name"): c.get("context") or {} for c in doc["contexts"] if isinstance(c, dict)}
    if context not in contexts:
        return f"has no context {context!r} (ctfleet:kubernetes.context); it has: {', '.join(sorted(map(str, contexts))) or 'none'}"
    clusters = {c.get("name") for c in doc.get("clusters") or [] if isinstance(c, dict)}
    if contexts[context].get("cluster") not in clusters:
        return f"context {context!r} names cluster {contexts[context].get('cluster')!r}, which the kubeconfig does not define"
    return None


def _check_images(cfg: StackConfig, bad: Bad) -> None:
    """The tier's workloads need their images, each name:tag; a localhost registry only on a development stack."""
    for name in Images.model_fields:
        value = getattr(cfg.images, name)
        if value is None:
            if name in IMAGES_BY_TIER[cfg.tier]:
                bad(("images", name), f"required key is missing for tier {cfg.tier}", IMAGE_VALID)
        elif not IMAGE.match(value):
            bad(("images", name), f"{value!r} is not an image reference with an explicit tag", IMAGE_VALID)
        elif LOCAL_REGISTRY.match(value) and not cfg.development:
            bad(("images", name), f"{value!r} is on a registry only this machine can reach; the cluster's nodes cannot pull it",
                "the registry your team pushes to (infra/README.md, Images), or ctfleet:development: true for a test cluster")


def _check_groups_and_networks(cfg: StackConfig, bad: Bad) -> None:
    for i, group in enumerate(cfg.operatorGroups):
        names = set(re.findall(r"{([^}]*)}", group))
        unknown = names - PLACEHOLDERS
        if not group.strip():
            bad(("operatorGroups", i), "empty group name", "a group name your cluster's authentication asserts")
        elif unknown:
            bad(("operatorGroups", i), f"unknown placeholder(s) {', '.join('{' + n + '}' for n in sorted(unknown))} in {group!r}",
                one_of("{" + p + "}" for p in sorted(PLACEHOLDERS)))
    if not is_dns_label(cfg.ingressNamespace):
        bad(("ingressNamespace",), f"{cfg.ingressNamespace!r} is not a namespace name", "a DNS-1123 label, e.g. ingress-nginx")
    for key in ("siteCidrs", "federationCidrs", "platformCidrs"):
        for i, cidr in enumerate(getattr(cfg, key)):
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                bad((key, i), f"{cidr!r} is not a network address ({exc})", "a CIDR such as 10.4.0.0/16")


_UNIT_WHAT = {"sdr": "region code", "eci": "grouping code", "sdl": "commune code with an SDL"}
_UNIT_VALID = {"sdr": "an HCP region code such as \"04\"", "eci": "a grouping code from inventory/groupings.yaml",
               "sdl": "the HCP code of a commune with arrondissements, e.g. 04.441.01.0"}
_VALID = {
    "tier": one_of(TIERS),
    "kubernetes": "either {context: NAME[, clusterIdentifier: ID]} with the secret ctfleet:kubeconfig, or {renderYamlToDirectory: DIR}",
    "images": IMAGE_VALID,
    "operatorGroups": "a list of one or more group names",
    "prometheusRetention": "a duration such as 30d, 12w or 1y",
    "expose": "per workload (prometheus, aptCacherNg): {kind: ingress, host: NAME, tlsSecret: SECRET | certManagerIssuer: ISSUER} "
              "or {kind: loadBalancer, sourceRanges: [CIDR, ...]}",
}


def _unit_choices(tier: str, registry: Registry, refs) -> str:
    units = sorted(r.unit for r in refs.values() if r.tier == tier and r.unit)
    return one_of(units) if len(units) <= 20 else _UNIT_VALID[tier]

