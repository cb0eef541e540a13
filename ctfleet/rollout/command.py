"""Building an Ansible invocation from a request (pure: no I/O, no clock, no environment).

:func:`build` returns everything ansible-runner needs: playbook, inventory, limit, extra
vars, environment and extra command-line arguments. The same invocation can be shown to
a technician as the ``ansible-playbook`` command it amounts to (:func:`as_shell`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ctfleet.rollout.config import RolloutPaths, RolloutRequest, Tuning


@dataclass(frozen=True)
class Invocation:
    playbook: Path
    inventory: Path
    limit: str
    extravars: dict
    envvars: dict[str, str]
    cmdline: tuple[str, ...] = ()
    forks: int = 5
    ident: str = ""
    fact_cache: Path | None = None  # shared between runs (tuned), else per run (ansible-runner's default)
    notes: tuple[str, ...] = field(default_factory=tuple)


def tuning_env(t: Tuning, fact_cache_dir: Path, mitogen_strategy_dir: Path | None = None) -> dict[str, str]:
    """ANSIBLE_* settings for a tuning.

    >>> env = tuning_env(Tuning(), Path("/tmp/fc"), Path("/m"))
    >>> env["ANSIBLE_PIPELINING"], env["ANSIBLE_CACHE_PLUGIN"], env["ANSIBLE_GATHERING"], env["ANSIBLE_STRATEGY"]
    ('True', 'jsonfile', 'smart', 'mitogen_linear')
    >>> "ANSIBLE_PIPELINING" in tuning_env(Tuning.stock(), Path("/tmp/fc"))
    False
    """
    env: dict[str, str] = {
        "ANSIBLE_TIMEOUT": str(t.ssh_timeout_s),
        "ANSIBLE_SSH_ARGS": f"-o ControlMaster=auto -o ControlPersist={t.control_persist_s}s -o ServerAliveInterval=15",
    }
    if t.pipelining:
        env["ANSIBLE_PIPELINING"] = "True"
    if t.fact_caching:
        # Facts kept across runs for an hour: a re-run or a retry does not gather them again.
        # (ansible-runner sets the cache's directory itself: see Invocation.fact_cache.)
        env.update({"ANSIBLE_GATHERING": "smart", "ANSIBLE_CACHE_PLUGIN": "jsonfile",
                    "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(fact_cache_dir), "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600"})
    if t.strategy.startswith("mitogen"):
        if mitogen_strategy_dir is None:
            raise ValueError("the mitogen strategy needs the mitogen package (pip install mitogen)")
        env["ANSIBLE_STRATEGY_PLUGINS"] = str(mitogen_strategy_dir)
    env["ANSIBLE_STRATEGY"] = t.strategy
    return env


def build(request: RolloutRequest, paths: RolloutPaths, *, run_id: str,
          mitogen_strategy_dir: Path | None = None) -> Invocation:
    """The invocation for ``request`` (``run_id`` names the run and its artifacts).

    >>> from ctfleet.rollout.config import RolloutPaths
    >>> paths = RolloutPaths.of(Path("/p"), Path("/p/var/results"))
    >>> inv = build(RolloutRequest(playbook="workstations.yml", lot=3, audit=True), paths, run_id="r1",
    ...             mitogen_strategy_dir=Path("/m"))
    >>> inv.limit, inv.extravars["ctfleet_mode"], inv.extravars["ctfleet_wave"], str(inv.playbook)
    ('lot_3', 'audit', 'lot_3', '/p/playbooks/workstations.yml')
    """
    playbook = Path(request.playbook)
    if not playbook.is_absolute():
        playbook = paths.playbooks / playbook
    inventory = Path(request.inventory) if request.inventory else paths.inventory
    extravars = {
        **request.extravars,
        "ctfleet_mode": "audit" if request.audit else "rollout",
        "ctfleet_allow_disruptive": bool(request.allow_disruptive),
        "ctfleet_run_id": run_id,
        "ctfleet_wave": request.wave_name,
    }
    env = {
        "ANSIBLE_ROLES_PATH": str(paths.playbooks / "roles"),
        "ANSIBLE_FILTER_PLUGINS": str(paths.playbooks / "filter_plugins"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_HOST_KEY_CHECKING": str(bool(request.host_key_checking)),
        "ANSIBLE_NOCOLOR": "True",
        "CTFLEET_ROOT": str(paths.root),
        **tuning_env(request.tuning, paths.runs / "facts", mitogen_strategy_dir),
    }
    if paths.profile is not None:
        # the inventory script reads the same profile: a regional run sees only its region's fleet
        env["CTFLEET_PROFILE"] = str(paths.profile)
    if request.private_key:
        env["ANSIBLE_PRIVATE_KEY_FILE"] = request.private_key
    if request.control_path_dir:
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = request.control_path_dir
    cmdline: list[str] = []
    if request.tags:
        cmdline += ["--tags", ",".join(request.tags)]
    if request.skip_tags:
        cmdline += ["--skip-tags", ",".join(request.skip_tags)]
    if request.check:
        cmdline.append("--check")
    notes = []
    if request.audit:
        notes.append("audit mode: read-only, results written to the results store")
    elif not request.allow_disruptive:
        notes.append("disruptive controls (SSH password logins, host firewall) are audited but not changed: add --allow-disruptive")
    return Invocation(playbook=playbook, inventory=inventory, limit=request.limit, extravars=extravars, envvars=env,
                      cmdline=tuple(cmdline), forks=request.tuning.forks, ident=run_id, notes=tuple(notes),
                      fact_cache=paths.runs / "facts" if request.tuning.fact_caching else None)


def as_shell(inv: Invocation) -> str:
    """The equivalent ``ansible-playbook`` command line, for a technician to read or copy."""
    import json

    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(inv.envvars.items()))
    args = ["ansible-playbook", "-i", str(inv.inventory), "--limit", inv.limit, "--forks", str(inv.forks),
            "--extra-vars", json.dumps(inv.extravars, sort_keys=True), *inv.cmdline, str(inv.playbook)]
    return f"{env} " + " ".join(shlex.quote(a) for a in args)
