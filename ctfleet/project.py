"""Loading a whole project: profile, registry, norms and fleet, in one call.

The profile (``ctfleet.yaml`` at the project root, or ``--profile FILE`` /
``CTFLEET_PROFILE``) says where the fleet comes from and can limit everything — the
CLI, the generated inventory, collector targets — to one region, for a regional team.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ctfleet.core.classify import SegmentRules
from ctfleet.core.errors import InputError, Problem
from ctfleet.core.norms import NormSet, load_norms
from ctfleet.core.registry import Paths, Registry, load_registry, load_segment_rules
from ctfleet.core.yamlio import load_yaml, validate
from ctfleet.results.forward import ServiceLink


class FleetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: Literal["generated", "files"] = "generated"
    seed: int = 2014
    dir: str | None = None  # for source=files: directory holding sites.csv and devices.csv


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "national"
    region: str | None = Field(default=None, pattern=r"^\d{2}$")
    fleet: FleetConfig = FleetConfig()
    results_dir: str = "var/results"
    # The region's results service: rollouts and collects send their audits there, through
    # the spool (kept until the service has them). None: results stay in results_dir only.
    results_service: ServiceLink | None = None
    spool_dir: str = "var/results-spool"
    path: str | None = Field(default=None, exclude=True)

    @field_validator("region", mode="before")
    @classmethod
    def _region_is_text(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError(f"the region code must be text: YAML reads {v:02d} as the number {v} (valid: quote it, region: \"{v:02d}\")")
        return v


def project_root() -> Path:
    env = os.environ.get("CTFLEET_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


def load_profile(root: Path, profile_path: str | Path | None = None) -> Profile:
    chosen = profile_path or os.environ.get("CTFLEET_PROFILE")
    path = Path(chosen) if chosen else root / "ctfleet.yaml"
    if not chosen and not path.exists():
        return Profile()
    doc = load_yaml(path, str(path))
    prof: Profile = validate(doc, Profile)
    return prof.model_copy(update={"path": str(path)})


@dataclass
class Project:
    root: Path
    paths: Paths
    profile: Profile
    rules: SegmentRules
    registry: Registry  # scoped to the profile's region when it has one
    national: Registry  # the whole registry (for national figures and cross-checks)
    norms: NormSet

    def resolve_path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.root / path

    @property
    def results_dir(self) -> Path:
        return self.resolve_path(self.profile.results_dir)

    @property
    def spool_dir(self) -> Path:
        return self.resolve_path(self.profile.spool_dir)


def load_project(profile_path: str | Path | None = None, root: Path | None = None, with_fleet: bool = True) -> Project:
    root = root or project_root()
    paths = Paths(root)
    profile = load_profile(root, profile_path)
    rules = load_segment_rules(paths)
    registry = load_registry(paths, rules)
    norms = load_norms(paths.standards, paths.show, ct_codes=set(registry.cts))
    attach_waivers_and_maintenance(norms, registry, paths)
    if with_fleet:
        attach_fleet(registry, norms, profile, root)
    scoped = registry.scoped(profile.region)
    return Project(root=root, paths=paths, profile=profile, rules=rules, registry=scoped, national=registry, norms=norms)


def attach_waivers_and_maintenance(norms: NormSet, registry: Registry, paths: Paths) -> None:
    """Load ``standards/waivers/`` and ``standards/maintenance.yaml`` against the registry."""
    from ctfleet.core.maintenance import load_maintenance
    from ctfleet.core.waivers import load_waivers

    ct_regions = {c.code: c.region_code for c in registry.cts.values()}
    norms.waivers = load_waivers(paths.standards, paths.show, set(norms.controls), ct_regions)
    norms.maintenance = load_maintenance(paths.standards, paths.show, ct_regions)


def attach_fleet(registry: Registry, norms: NormSet, profile: Profile, root: Path) -> None:
    fleet = profile.fleet
    if fleet.source == "generated":
        from ctfleet.core.fleet import generate

        sites, devices = generate(registry, norms, seed=fleet.seed)
        registry.attach_fleet(sites, devices, f"generated (seed {fleet.seed}) - simulated fleet, not real equipment")
    else:
        if not fleet.dir:
            raise InputError(Problem(profile.path or "profile", "fleet.source is files but fleet.dir is not set", key="fleet.dir",
                                     valid="a directory holding sites.csv and devices.csv"))
        from ctfleet.importer import load_fleet_dir

        d = Path(fleet.dir) if Path(fleet.dir).is_absolute() else root / fleet.dir
        sites, devices = load_fleet_dir(d, registry)
        registry.attach_fleet(sites, devices, f"files in {d}")
    attach_links(registry, norms)


def attach_links(registry: Registry, norms: NormSet) -> None:
    """Tell the norms each CT's link type (its first site's uplink), so link norms
    (standards/norms/links/) resolve for (segment, link type) everywhere."""
    norms.attach_links({code: sites[0].uplink.type for code in registry.cts if (sites := registry.sites_of(code))})
