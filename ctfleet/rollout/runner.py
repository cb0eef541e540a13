"""Running a rollout on ansible-runner (the I/O edge).

    outcome = run_rollout(request, paths, on_event=progress.on_event)
    outcome.exit_code   # 0 only when every host finished without failure

What it does, in order: build the invocation (pure, :mod:`ctfleet.rollout.command`), run
``ansible_runner.run`` in ``var/rollout/`` with artifacts rotated (the last
``keep_runs`` runs kept), fold every event into a :class:`RunState` and hand it to the
``on_event`` callback, then write the audit results to the results store, a run record
(``var/rollout/runs/<run_id>.json``: request, per-host counts, before/after results) and
``var/rollout/last-failed.json`` for :func:`retry_request`; when the profile names the
region's results service, the same results go there as one batch (``rollout-<run id>``)
through the spool (``forward``: :func:`ctfleet.results.forward.send`).

The ansible-runner call is injected (``run_fn``) so tests can replay recorded events.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ctfleet.core.yamlio import load_yaml, validate
from ctfleet.results import ResultsStore, atomic_write_text
from ctfleet.rollout.audit import merge_into_store, report_to_inventory, report_to_results
from ctfleet.rollout.command import Invocation, build
from ctfleet.rollout.config import RolloutPaths, RolloutRequest, Wave, Waves
from ctfleet.rollout.events import RunState

EventCallback = Callable[[RunState, dict, "str | None"], None]


@dataclass
class Outcome:
    run_id: str
    request: RolloutRequest
    invocation: Invocation
    state: RunState
    runner_status: str  # successful | failed | timeout | canceled
    runner_rc: int
    artifacts: Path | None
    record: Path
    results_written: int
    wave: Wave | None = None  # the waves the playbook ran with (vars/waves.yml), when it has that file
    stopped_by_wave: bool = False  # Ansible ran out of hosts: a wave failed beyond max_fail_percentage
    delivery: Any = None  # ctfleet.results.forward.Delivery when the results were sent to the region's service

    @property
    def failed_hosts(self) -> list[str]:
        return self.state.failed_hosts()

    @property
    def exit_code(self) -> int:
        if self.failed_hosts or self.runner_status != "successful" or self.runner_rc != 0:
            return 2
        return 0


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def mitogen_strategy_dir() -> Path | None:
    try:
        import ansible_mitogen  # type: ignore
    except ImportError:
        return None
    return Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"


def _ansible_runner_run(**kwargs):  # pragma: no cover - exercised by the booted-host tests
    import ansible_runner

    return ansible_runner.run(**kwargs)


def load_waves(paths: RolloutPaths) -> Waves | None:
    """``playbooks/vars/waves.yml``, validated (errors name the file, line and key); None when absent."""
    path = paths.playbooks / "vars" / "waves.yml"
    if not path.exists():
        return None
    return validate(load_yaml(path), Waves)


def run_rollout(request: RolloutRequest, paths: RolloutPaths, *, on_event: EventCallback | None = None,
                run_fn: Callable[..., Any] = _ansible_runner_run, keep_runs: int = 20, run_id: str | None = None,
                forward: Callable[[str, list], Any] | None = None) -> Outcome:
    run_id = run_id or new_run_id()
    waves = load_waves(paths)
    wave = waves.get(request.wave_name, str(paths.playbooks / "vars" / "waves.yml")) if waves is not None else None
    inv = build(request, paths, run_id=run_id, mitogen_strategy_dir=mitogen_strategy_dir())
    state = RunState()
    paths.runs.mkdir(parents=True, exist_ok=True)
    (paths.runs / "facts").mkdir(exist_ok=True)

    stopped: list[bool] = []

    def handler(event: dict) -> bool:
        if event.get("event") == "playbook_on_no_hosts_remaining":
            stopped.append(True)  # a wave failed beyond max_fail_percentage (or every host of a play failed)
        host = state.apply(event)
        if on_event is not None:
            on_event(state, event, host)
        return True  # keep the event in the artifacts (the run record)

    envvars = dict(inv.envvars)
    # ansible-playbook comes from the same environment as ctfleet (the project's venv).
    envvars["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    r = run_fn(private_data_dir=str(paths.runs), project_dir=str(paths.playbooks), playbook=str(inv.playbook),
               inventory=str(inv.inventory), limit=inv.limit, extravars=inv.extravars, envvars=envvars,
               cmdline=" ".join(_quote(a) for a in inv.cmdline) or None, forks=inv.forks, ident=run_id,
               rotate_artifacts=keep_runs, event_handler=handler, quiet=True, suppress_env_files=True,
               **({"fact_cache": str(inv.fact_cache), "fact_cache_type": "jsonfile"} if inv.fact_cache else {}))
    status = getattr(r, "status", "failed")
    rc = int(getattr(r, "rc", 1) or 0)
    artifacts = Path(r.config.artifact_dir) if getattr(r, "config", None) is not None and getattr(r.config, "artifact_dir", None) else None

    rows, inventories = _write_results(state, ResultsStore(paths.results))
    # the observed inventories travel in the same batch as the results (ctfleet.results.batch)
    delivery = forward(f"rollout-{run_id}", rows + inventories) if forward is not None and (rows or inventories) else None
    record = _write_record(paths, run_id, request, inv, state, status, rc, artifacts, stopped=bool(stopped), delivery=delivery)
    return Outcome(run_id=run_id, request=request, invocation=inv, state=state, runner_status=status, runner_rc=rc,
                   artifacts=artifacts, record=record, results_written=len(rows), wave=wave, stopped_by_wave=bool(stopped),
                   delivery=delivery)


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(a)


def _write_results(state: RunState, store: ResultsStore) -> tuple[list, list]:
    """The last phase of each host (``after``, or ``audit``) goes to the shared store, with
    the host's observed inventory; returns the rows and the inventory records written."""
    written: list = []
    inventories: list = []
    for name, h in state.hosts.items():
        phase = h.last_phase()
        if phase is None or phase == "before":
            continue  # a host that failed before its post-change audit keeps its previous results
        rows = []
        for report in h.reports[phase].values():
            rows += report_to_results(report, name)
        if rows:
            merge_into_store(store, name, rows)
            written += rows
        if h.inventory and h.inventory.get("ct"):
            inventories.append(report_to_inventory(h.inventory, name))
            store.write_inventory(name, inventories[-1:])
    return written, inventories


def _write_record(paths: RolloutPaths, run_id: str, request: RolloutRequest, inv: Invocation, state: RunState,
                  status: str, rc: int, artifacts: Path | None, *, stopped: bool = False, delivery: Any = None) -> Path:
    hosts = {}
    for name, h in sorted(state.hosts.items()):
        hosts[name] = {"status": h.status, **h.final_counts(), "tasks": h.tasks_done, "first_error": h.first_error,
                       "failing_controls": h.failing_controls(),
                       "results": {phase: h.results(phase) for phase in h.reports}}
    record = {"run_id": run_id, "request": request.model_dump(mode="json"), "limit": inv.limit,
              "playbook": str(inv.playbook), "runner_status": status, "runner_rc": rc,
              "artifacts": str(artifacts) if artifacts else None, "failed_hosts": state.failed_hosts(), "hosts": hosts,
              "stopped_by_wave": stopped, "delivery": delivery.as_dict() if delivery is not None else None}
    path = paths.runs / "runs" / f"{run_id}.json"
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    _rotate(paths.runs / "runs", keep=200)
    if state.failed_hosts():
        atomic_write_text(paths.runs / "last-failed.json", json.dumps(
            {"run_id": run_id, "request": request.model_dump(mode="json"), "hosts": state.failed_hosts()}, indent=1) + "\n")
    elif (paths.runs / "last-failed.json").exists():
        last = json.loads((paths.runs / "last-failed.json").read_text(encoding="utf-8"))
        if last.get("request", {}).get("playbook") == request.playbook:
            os.unlink(paths.runs / "last-failed.json")  # the retry (or a full re-run) converged them
    return path


def _rotate(directory: Path, keep: int) -> None:
    records = sorted(directory.glob("*.json"))
    for old in records[:-keep]:
        old.unlink(missing_ok=True)


def expected_tasks(paths: RolloutPaths, request: RolloutRequest) -> dict[str, int]:
    """Tasks per host in the last finished run of the same playbook and mode (progress bar totals)."""
    for record in sorted((paths.runs / "runs").glob("*.json"), reverse=True)[:50]:
        try:
            r = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        req = r.get("request", {})
        if req.get("playbook") == request.playbook and req.get("audit") == request.audit and not r.get("failed_hosts"):
            return {h: v.get("tasks", 0) for h, v in r.get("hosts", {}).items() if v.get("tasks")}
    return {}


def retry_request(paths: RolloutPaths) -> RolloutRequest | None:
    """The last run that left failed hosts, limited to those hosts; None when nothing failed."""
    path = paths.runs / "last-failed.json"
    if not path.exists():
        return None
    last = json.loads(path.read_text(encoding="utf-8"))
    req = dict(last["request"])
    for key in ("ct", "region", "lot"):
        req[key] = None
    req["hosts"] = tuple(last["hosts"])
    return RolloutRequest.model_validate(req)
