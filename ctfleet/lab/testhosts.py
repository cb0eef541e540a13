"""The booted test fleet (``scripts/testhosts``) as seen from Python: tests and the benchmark.

:func:`inventory` writes a static YAML inventory for the booted hosts with the same
groups and variables as the ctfleet dynamic inventory (``ct_*``, ``lot_N``,
``segment_*``, ``norms_<segment>_lot<N>`` carrying ``ctfleet_norms``, ``role_*``,
``platform_*``), built with :mod:`ctfleet.ansible_inventory`'s own helpers from a real
CT's resolved norms, so the playbooks meet exactly what production gives them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from ctfleet.ansible_inventory import norm_layers, norm_vars
from ctfleet.core.conventions import group_name, norms_group_name
from ctfleet.core.models import CT
from ctfleet.core.norms import NormSet

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "testhosts"


def _run(*args: str, timeout: float = 900, env: dict | None = None) -> str:
    p = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise RuntimeError(f"scripts/testhosts {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


def build(env: dict | None = None) -> None:
    _run("build", timeout=1800, env=env)


def up(n: int, env: dict | None = None) -> dict[str, Any]:
    out = _run("up", str(n), timeout=1800, env=env)
    return json.loads(out.strip().splitlines()[-1])


def status(env: dict | None = None) -> dict[str, Any]:
    return json.loads(_run("status", env=env).strip().splitlines()[-1])


def kill(host: str, env: dict | None = None) -> None:
    _run("kill", host, env=env)


def start(host: str, env: dict | None = None) -> None:
    _run("start", host, env=env)


def down(env: dict | None = None) -> None:
    _run("down", timeout=300, env=env)


def inventory(fleet: dict[str, Any], ct: CT, norms: NormSet, roles: dict[str, str], *, extra_vars: dict | None = None) -> dict:
    """Inventory (as a dict to dump in YAML/JSON) for the booted hosts of ``fleet``.

    ``roles`` maps host -> "workstation" | "server". Everything reaches the hosts the way
    the dynamic inventory says; the test-only facts (addresses, the admin key, the NTP and
    log collector on the bridge) go in ``all.vars``.
    """
    gw = fleet["gateway"]
    key_pub = Path(fleet["key"] + ".pub").read_text(encoding="utf-8").strip()
    hostvars = {}
    for name, h in fleet["hosts"].items():
        role = roles.get(name)
        if role is None:
            continue
        hostvars[name] = {"ansible_host": h["ip"], "ctfleet_role": role, "ctfleet_platform": "debian",
                          "ctfleet_os_version": "12", "ctfleet_ct": ct.code, "ctfleet_site": f"{ct.code}-S1"}
    ct_group, shared = group_name("ct", ct.code), norms_group_name(ct, norms.link_of(ct))
    all_vars = {
        "ansible_user": "ctfadmin", "ansible_become": True, "ansible_python_interpreter": "/usr/bin/python3",
        "ctfleet_admins": [{"name": "ctfadmin", "ssh_keys": [key_pub]}],
        "baseline_ntp_servers": [gw], "baseline_log_collector": f"{gw}:514",
        "reference_server_backup_offsite_repository": f"sftp:backup@{gw}:/srv/backups/{ct.code}",
        **(extra_vars or {}),
    }
    groups: dict[str, Any] = {
        "all": {"vars": all_vars, "children": {}},
    }
    children = groups["all"]["children"]
    children[group_name("region", ct.region_code)] = {"children": {ct_group: {}}}
    children[ct_group] = {"hosts": {n: hostvars[n] for n in sorted(hostvars)}, "vars": {"ctfleet_segment": ct.segment.value,
                                                                                      "ctfleet_lot": ct.lot}}
    children[group_name("segment", ct.segment.value)] = {"children": {shared: {}}}
    children[f"lot_{ct.lot}"] = {"children": {shared: {}}}
    children[shared] = {"children": {ct_group: {}}, "vars": norm_vars(norms.resolve(ct), norm_layers(norms, ct))}
    for role in ("workstation", "server"):
        children[f"role_{role}"] = {"hosts": {n: {} for n in sorted(hostvars) if hostvars[n]["ctfleet_role"] == role}}
    children["platform_debian"] = {"hosts": {n: {} for n in sorted(hostvars)}}
    return groups
