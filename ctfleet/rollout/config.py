"""What a rollout is asked to do, validated up front (pure).

A :class:`RolloutRequest` is what ``ctfleet rollout PLAYBOOK --ct CODE [--audit]`` means;
:class:`Tuning` is how Ansible is run (the project's tuned settings, or stock defaults
for comparison). Both are strict: an unknown key or a bad combination fails at load with
one message naming the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tuning(_Strict):
    """How Ansible runs. ``tuned`` is what ctfleet uses; ``stock()`` is ansible-playbook's defaults.

    >>> Tuning().pipelining, Tuning.stock().pipelining
    (True, False)
    """

    forks: int = Field(default=25, ge=1, le=500)
    pipelining: bool = True
    fact_caching: bool = True
    control_persist_s: int = Field(default=120, ge=0)
    strategy: Literal["linear", "free", "mitogen_linear", "mitogen_free"] = "linear"
    ssh_timeout_s: int = Field(default=30, ge=5)  # satellite links answer slowly

    @classmethod
    def stock(cls) -> "Tuning":
        return cls(forks=5, pipelining=False, fact_caching=False, control_persist_s=60, strategy="linear", ssh_timeout_s=10)


class RolloutRequest(_Strict):
    """One rollout: a playbook, the communes it targets, and how.

    Exactly one selection: ``ct`` (HCP code), ``region`` (HCP region code), ``lot`` (1..3),
    or ``hosts`` (explicit hostnames, what a retry uses).

    >>> RolloutRequest(playbook="workstations.yml", ct="04.161.01.03", audit=True).limit
    'ct_04_161_01_03'
    """

    playbook: str
    ct: str | None = None
    region: str | None = Field(default=None, pattern=r"^\d{2}$")
    lot: int | None = Field(default=None, ge=1, le=3)
    hosts: tuple[str, ...] = ()
    audit: bool = False
    allow_disruptive: bool = False
    check: bool = False
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    extravars: dict = Field(default_factory=dict)
    wave: str | None = None  # key of playbooks/vars/waves.yml; default: lot_N with --lot, else "default"
    inventory: str | None = None  # default: inventory/ctfleet_inventory.py
    private_key: str | None = None
    control_path_dir: str | None = None
    host_key_checking: bool = True
    tuning: Tuning = Tuning()

    @model_validator(mode="after")
    def _one_selection(self) -> "RolloutRequest":
        chosen = [n for n, v in (("ct", self.ct), ("region", self.region), ("lot", self.lot), ("hosts", self.hosts)) if v]
        if len(chosen) != 1:
            raise ValueError(f"choose exactly one of --ct, --region, --lot (or hosts for a retry); got {', '.join(chosen) or 'none'}")
        if self.audit and self.allow_disruptive:
            raise ValueError("--audit changes nothing: --allow-disruptive makes no sense with it")
        if not re.match(r"^[A-Za-z0-9_./-]+\.ya?ml$", self.playbook):
            raise ValueError(f"playbook {self.playbook!r}: expected a playbook file name such as workstations.yml")
        for h in self.hosts:
            if not re.match(r"^[A-Za-z0-9_.-]+$", h):
                raise ValueError(f"host {h!r}: expected a hostname")
        return self

    @property
    def limit(self) -> str:
        """The inventory pattern of the selection (groups of the ctfleet dynamic inventory)."""
        from ctfleet.core.conventions import group_name

        if self.ct:
            return group_name("ct", self.ct)
        if self.region:
            return group_name("region", self.region)
        if self.lot:
            return f"lot_{self.lot}"
        return ",".join(self.hosts)

    @property
    def selection(self) -> str:
        if self.ct:
            return f"CT {self.ct}"
        if self.region:
            return f"region {self.region}"
        if self.lot:
            return f"lot {self.lot}"
        return f"{len(self.hosts)} host(s)"

    @property
    def wave_name(self) -> str:
        return self.wave or (f"lot_{self.lot}" if self.lot else "default")


class RolloutPaths(_Strict):
    """Where a rollout reads and writes, from the project root."""

    root: Path
    playbooks: Path
    inventory: Path
    runs: Path  # ansible-runner private data dirs and artifacts (rotated)
    results: Path  # the shared results store
    profile: Path | None = None  # the ctfleet profile: handed to the inventory script (CTFLEET_PROFILE)

    @classmethod
    def of(cls, root: Path, results: Path, profile: Path | str | None = None) -> "RolloutPaths":
        return cls(root=root, playbooks=root / "playbooks", inventory=root / "inventory" / "ctfleet_inventory.py",
                   runs=root / "var" / "rollout", results=results, profile=Path(profile) if profile else None)
