"""What a rollout is asked to do, validated up front (pure).

A :class:`RolloutRequest` is what ``ctfleet rollout PLAYBOOK --ct CODE [--audit]`` means;
:class:`Tuning` is how Ansible is run (the project's tuned settings, or stock defaults
for comparison). Both are strict: an unknown key or a bad combination fails at load with
one message naming the field. :class:`Waves` is ``playbooks/vars/waves.yml``: per lot, how
many hosts change at once (``serial``) and how many of a wave may fail before the rollout
stops (``max_fail_percentage``); the runner loads it and refuses a wave it does not name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ctfleet.core.errors import InputError, Problem

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tuning(_Strict):
    """How Ansible runs. ``Tuning()`` is what ctfleet uses; ``stock()`` is ansible-playbook's defaults.

    The default strategy is mitogen's: the booted-host suite (converge, re-run changed=0,
    a host killed mid-run then retried, read-only audit, waves, pull mode) passes under it,
    and it is the fastest configuration measured (bench/README.md: modules stay cached on
    the host, so a re-run sends ~0.5 MB per host instead of ~20 MB). ``linear`` remains for
    comparison and for controllers without mitogen (``ctfleet rollout --no-mitogen``).
    ``site.yml``'s shared play of servers and workstations turns the configured strategy into
    its ``free`` form (``mitogen_free``, ``free``) so that each host goes at its own pace.

    >>> Tuning().pipelining, Tuning().strategy, Tuning.stock().pipelining, Tuning.stock().strategy
    (True, 'mitogen_linear', False, 'linear')
    """

    forks: int = Field(default=25, ge=1, le=500)
    pipelining: bool = True
    fact_caching: bool = True
    control_persist_s: int = Field(default=120, ge=0)
    strategy: Literal["linear", "free", "mitogen_linear", "mitogen_free"] = "mitogen_linear"
    ssh_timeout_s: int = Field(default=30, ge=5)  # satellite links answer slowly

    @classmethod
    def stock(cls) -> "Tuning":
        return cls(forks=5, pipelining=False, fact_caching=False, control_persist_s=60, strategy="linear", ssh_timeout_s=10)


class Wave(_Strict):
    """One lot's waves: ``serial`` as Ansible takes it (host counts or ``"N%"``), ``max_fail_percentage`` per wave."""

    serial: list[int | str] = Field(min_length=1)
    max_fail_percentage: int = Field(ge=0, le=100)

    @field_validator("serial")
    @classmethod
    def _sizes(cls, v: list[int | str]) -> list[int | str]:
        for size in v:
            if isinstance(size, int) and size >= 1:
                continue
            if isinstance(size, str) and re.fullmatch(r"(100|[1-9]\d?)%", size):
                continue
            raise ValueError(f"wave size {size!r}: expected a host count >= 1 or a percentage such as '25%'")
        return v


class Waves(_Strict):
    """``playbooks/vars/waves.yml``.

    >>> w = Waves.model_validate({"ctfleet_waves": {"default": {"serial": [1, "100%"], "max_fail_percentage": 20}}})
    >>> w.get("default", "waves.yml").serial
    [1, '100%']
    """

    ctfleet_waves: dict[str, Wave]

    @field_validator("ctfleet_waves")
    @classmethod
    def _has_default(cls, v: dict[str, Wave]) -> dict[str, Wave]:
        if "default" not in v:
            raise ValueError("a 'default' wave is required (rollouts by CT or region use it)")
        return v

    def get(self, name: str, source: str) -> Wave:
        if name not in self.ctfleet_waves:
            raise InputError(Problem(source, f"no wave named {name!r}", key=f"ctfleet_waves.{name}",
                                     valid="one of " + ", ".join(sorted(self.ctfleet_waves))))
        return self.ctfleet_waves[name]


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
