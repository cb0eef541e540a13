"""``Pulumi.<stack>.yaml`` files compiled from the registry (``ctfleet stacks generate``).

The registry decides which stacks exist and what each provisions (``ctfleet:tier``,
``ctfleet:unit``); the operators decide where it goes (cluster context, CIDRs, images,
groups). Regenerating rewrites the first and keeps every value an operator set for the
second, plus any non-ctfleet keys (``encryptionsalt``, secrets, other namespaces). Files are
written atomically; files of stacks the registry no longer has are reported, not deleted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from ctfleet.core.yamlio import Doc, load_yaml
from ctfleet.results import atomic_write_text
from ctfleet.stacks.config import DEFAULT_IMAGES, IMAGES_BY_TIER
from ctfleet.stacks.names import StackRef

# Where the images built from infra/images/ are pushed (`buildah push`); a team using its
# own registry sets ctfleet:images, which regenerating keeps. A localhost registry is only
# accepted on a stack marked ctfleet:development.
DEFAULT_IMAGE_REGISTRY = "registry.ctfleet.ma/ctfleet"
PROMETHEUS_IMAGE = "quay.io/prometheus/prometheus:v3.5.0"
DERIVED = ("ctfleet:tier", "ctfleet:unit")  # always recomputed from the registry
MERGED = ("ctfleet:images", "ctfleet:dataPath")  # keys added to these by a new version reach existing files
DOMAIN = "ctfleet.ma"  # placeholder host names of the data path's endpoints; each team sets its own


def default_config(ref: StackRef, image_registry: str = DEFAULT_IMAGE_REGISTRY) -> dict[str, Any]:
    """A new stack's config: provisions ``ref``, deploys to the kubeconfig context named after the stack."""
    images_all = {
        "collector": f"{image_registry}/collector:0.1.0",
        "prometheus": PROMETHEUS_IMAGE,
        "aptCacherNg": f"{image_registry}/apt-cacher-ng:3.7.4",
        **DEFAULT_IMAGES,
    }
    cfg: dict[str, Any] = {"ctfleet:tier": ref.tier}
    if ref.unit is not None:
        cfg["ctfleet:unit"] = ref.unit
    cfg["ctfleet:kubernetes"] = {"context": ref.name}
    images = {k: v for k, v in images_all.items() if k in IMAGES_BY_TIER[ref.tier] or (ref.tier == "sdr" and k in DEFAULT_IMAGES)}
    if images:
        cfg["ctfleet:images"] = images
    cfg["ctfleet:operatorGroups"] = [f"{ref.name}:operators", "{namespace}:admins"]
    cfg["ctfleet:ingressNamespace"] = "ingress-nginx"
    if ref.tier in ("sdr", "national"):
        cfg["ctfleet:federationCidrs"] = []
        cfg["ctfleet:prometheusRetention"] = "30d"
    if ref.tier == "sdr":
        cfg["ctfleet:siteCidrs"] = []
        # a new regional stack is a demonstration on the generated fleet until its team sets
        # ctfleet:profile to the region's profile on its imported fleet (infra/README.md)
        cfg["ctfleet:demo"] = True
        cfg["ctfleet:dataPath"] = {"resultsHost": f"results.{ref.name}.{DOMAIN}",
                                   "nationalWriteUrl": f"https://metrics.national.{DOMAIN}/api/v1/write"}
    if ref.tier == "national":
        cfg["ctfleet:federate"] = {}
        cfg["ctfleet:dataPath"] = {"receiverHost": f"metrics.national.{DOMAIN}"}
    return cfg


def merged(ref: StackRef, existing: dict[str, Any] | None, image_registry: str = DEFAULT_IMAGE_REGISTRY) -> dict[str, Any]:
    """The file's new content: registry-derived keys recomputed, operators' values kept."""
    existing = dict(existing or {})
    old_config = dict(existing.pop("config", None) or {})
    config = default_config(ref, image_registry)
    for key, value in old_config.items():
        if key in MERGED and isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = config[key] | value
        elif key not in DERIVED:
            config[key] = value
    return existing | {"config": config}


def with_profile(ref: StackRef, content: dict[str, Any], profile_path: Path, root: Path) -> dict[str, Any]:
    """A regional stack's file pointed at the team's profile (``ctfleet --profile P stacks generate``):
    ``ctfleet:profile`` set to it, and no longer a demonstration when its fleet is imported files."""
    from ctfleet.project import load_profile

    profile = load_profile(root, profile_path)
    if ref.tier != "sdr" or profile.region != ref.unit:
        return content
    path = profile_path.resolve()
    shown = str(path.relative_to(root.resolve())) if path.is_relative_to(root.resolve()) else str(path)
    config = dict(content["config"]) | {"ctfleet:profile": shown}
    if profile.fleet.source == "files":
        config["ctfleet:demo"] = False
    return content | {"config": config}


def render_file(ref: StackRef, content: dict[str, Any]) -> str:
    y = YAML(typ="rt")
    y.default_flow_style = False
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    y.dump(content, buf)
    header = (
        f"# Stack {ref.name}: {ref.title}.\n"
        "# Generated by `ctfleet stacks generate` from the registry. Regenerating recomputes\n"
        "# ctfleet:tier and ctfleet:unit and keeps every other value set here.\n"
        f"# Check before applying: ctfleet stacks plan {ref.name}\n"
    )
    return header + buf.getvalue()


@dataclass
class GenerateResult:
    written: list[Path]
    unchanged: list[Path]
    stale: list[Path]  # files of stacks the registry does not have


def generate(stacks: dict[str, StackRef], directory: Path, image_registry: str = DEFAULT_IMAGE_REGISTRY,
             profile: str | Path | None = None, root: Path | None = None) -> GenerateResult:
    """Write the stacks' files; with a regional ``profile``, its region's SDR stack points at it (:func:`with_profile`)."""
    written, unchanged = [], []
    for ref in stacks.values():
        path = directory / f"Pulumi.{ref.name}.yaml"
        existing = None
        old_text = None
        if path.exists():
            old_text = path.read_text(encoding="utf-8")
            existing = load_yaml(path, str(path)).plain() or {}
        content = merged(ref, existing, image_registry)
        if profile is not None and root is not None:
            content = with_profile(ref, content, Path(profile), root)
        text = render_file(ref, content)
        if text == old_text:
            unchanged.append(path)
            continue
        atomic_write_text(path, text)
        written.append(path)
    known = {f"Pulumi.{name}.yaml" for name in stacks}
    stale = sorted(p for p in directory.glob("Pulumi.*.yaml") if p.name not in known)
    return GenerateResult(written, unchanged, stale)


def read_stack_file(path: Path, display: str | None = None) -> tuple[dict[str, Any], Doc]:
    """The ``config:`` mapping of a ``Pulumi.<stack>.yaml`` (structured values kept) and its document,
    whose ``line_of(("config", key, ...))`` gives error lines."""
    doc = load_yaml(path, display or str(path))
    plain = doc.plain() or {}
    return dict(plain.get("config") or {}), doc


def config_line_of(doc: Doc):
    """A ``line_of`` for :func:`ctfleet.stacks.config.validate_config`: loc ('images', 'collector') -> line."""
    def line_of(loc: tuple) -> int | None:
        return doc.line_of(("config", f"ctfleet:{loc[0]}") + tuple(loc[1:]))
    return line_of
