"""The Pulumi program: read config, validate it, plan, create the tier's component, export.

``infra/__main__.py`` calls :func:`main`. Order matters: the config is validated (pure,
every bad key named at once) before the provider or any resource is declared, so a bad
``Pulumi.<stack>.yaml`` fails without touching a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctfleet.core.norms import NormSet
from ctfleet.core.registry import Registry
from ctfleet.stacks.config import NAMESPACE, StackConfig, validate_config
from ctfleet.stacks.hosting import HostingCatalogue, load_hosting
from ctfleet.stacks.names import StackRef, stack_index
from ctfleet.stacks.plan import StackPlan, plan_stack

STACKS_DIR = Path("infra") / "stacks"  # stackConfigDir in Pulumi.yaml
RULES_DIR = Path("monitors") / "rules"


@dataclass
class Inputs:
    """What every stack reads: the whole registry (no fleet), the norms, the hosting catalogue, the rules."""

    root: Path
    registry: Registry
    norms: NormSet
    hosting: HostingCatalogue
    rules: dict[str, str]
    region: str | None = None  # a regional profile's region: only its stacks (ctfleet.stacks.scope)

    @property
    def stacks(self) -> dict[str, StackRef]:
        from ctfleet.stacks.scope import stacks_in_scope

        return stacks_in_scope(stack_index(self.registry), self.registry, self.region)


def load_inputs(root: Path | None = None, profile: str | Path | None = None) -> Inputs:
    """The inputs of every stack; with a regional ``profile`` (``ctfleet --profile``), only its region's stacks.

    The Pulumi program never passes a profile: a stack's fleet comes from its own
    ``ctfleet:profile``, not from the operator's environment.
    """
    from ctfleet.project import load_project

    project = load_project(profile, root=root, with_fleet=False)
    return Inputs(project.root, project.national, project.norms, load_hosting(project.root), load_rule_files(project.root),
                  region=project.profile.region)


def load_rule_files(root: Path) -> dict[str, str]:
    """Prometheus rule files shipped in ``monitors/rules/`` (none yet is fine)."""
    d = root / RULES_DIR
    if not d.is_dir():
        return {}
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(d.iterdir()) if p.suffix in (".yml", ".yaml") and p.is_file()}


def config_source(stack: str) -> str:
    return str(STACKS_DIR / f"Pulumi.{stack}.yaml")


def plan_for(inputs: Inputs, stack: str, raw_config: dict[str, Any], line_of=None,
             secret_keys: frozenset[str] | set[str] = frozenset(), deploying: bool = False) -> StackPlan:
    """Validate ``stack``'s config and plan it (pure after the inputs are loaded)."""
    cfg: StackConfig = validate_config(raw_config, stack, inputs.registry, config_source(stack), line_of,
                                       secret_keys=secret_keys, deploying=deploying)
    return plan_config(inputs, stack, cfg, config_source(stack), line_of)


def plan_config(inputs: Inputs, stack: str, cfg: StackConfig, source: str, line_of=None) -> StackPlan:
    """Plan a validated config; a regional stack's fleet is read (and refused) here, naming ``ctfleet:profile``."""
    ref = inputs.stacks[stack]
    fleet = None
    if ref.tier == "sdr":
        from ctfleet.stacks.dataplane import load_fleet_source

        fleet = load_fleet_source(inputs.root, inputs.registry, cfg, ref, source, line_of, inputs.norms)
    return plan_stack(ref, cfg, inputs.registry, inputs.norms, inputs.hosting, inputs.rules if ref.tier == "sdr" else {},
                      fleet=fleet)


# Every provider setting the SDK would otherwise read from the operator's environment
# (KUBECONFIG, PULUMI_K8S_*), set to the provider's documented default, so two teammates'
# shells give the same provider inputs.
PROVIDER_DEFAULTS: dict[str, Any] = {
    "delete_unreachable": False, "enable_config_map_mutable": False, "enable_patch_force": False,
    "enable_secret_mutable": False, "enable_server_side_apply": True, "skip_update_unreachable": False,
    "suppress_deprecation_warnings": False, "suppress_helm_hook_warnings": False, "upsert_existing_objects": False,
}


def provider_args(cfg: StackConfig, stack: str, kubeconfig: Any = None) -> dict[str, Any]:
    """Keyword arguments of the Kubernetes provider: deploy through a context of the secret kubeconfig, or render YAML.

    ``kubeconfig`` is what the program passes (``pulumi.Config("ctfleet").require_secret``, a
    secret Output); never the ambient ``$KUBECONFIG``: in render mode it is an empty string,
    which keeps the SDK from copying the environment's into the provider's inputs.
    """
    k = cfg.kubernetes
    args: dict[str, Any] = dict(PROVIDER_DEFAULTS)
    args["cluster_identifier"] = k.clusterIdentifier or stack
    if k.renderYamlToDirectory:
        return args | {"render_yaml_to_directory": k.renderYamlToDirectory, "kubeconfig": ""}
    return args | {"context": k.context, "kubeconfig": kubeconfig if kubeconfig is not None else ""}


def pulumi_config() -> tuple[dict[str, Any], frozenset[str]]:
    """Every config key of the running stack (the engine's, then any set in-process, e.g. by tests), and which are secrets."""
    from pulumi.runtime import config as runtime_config

    raw = dict(runtime_config.get_config_env())
    raw.update(runtime_config.CONFIG.get())
    secret = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get() or ())
    return raw, frozenset(secret)


def main(inputs: Inputs | None = None) -> None:
    import pulumi
    import pulumi_kubernetes as k8s

    from ctfleet.stacks.components import COMPONENTS

    stack = pulumi.get_stack()
    inputs = inputs or load_inputs()
    if stack not in inputs.stacks:
        from ctfleet.core.errors import InputError, Problem, one_of

        raise InputError(Problem(config_source(stack), f"no hosting unit is called {stack!r}", key="stack name",
                                 valid=one_of(inputs.stacks)))
    raw, secret_keys = pulumi_config()
    plan = plan_for(inputs, stack, raw, secret_keys=secret_keys, deploying=True)
    kubeconfig = None
    if plan.config.kubeconfig is not None:
        # read through pulumi.Config so the value stays a secret in the provider's state
        kubeconfig = pulumi.Config(NAMESPACE).require_secret("kubeconfig")
    provider = k8s.Provider(f"k8s-{stack}", **provider_args(plan.config, stack, kubeconfig))
    cloud = COMPONENTS[plan.ref.tier](plan, pulumi.ResourceOptions(providers=[provider]))
    pulumi.export("stack", plan.ref.name)
    pulumi.export("tier", plan.ref.tier)
    pulumi.export("unit", plan.ref.unit)
    pulumi.export("tenantNamespaces", cloud.tenant_namespaces)
    pulumi.export("tenantCount", cloud.tenant_count)
    pulumi.export("quotaTotal", cloud.quota_total)
    pulumi.export("notes", plan.notes)
    # what `ctfleet stacks plan STACK --deployed` compares the next plan with
    pulumi.export("dataInventory", cloud.data_inventory)
