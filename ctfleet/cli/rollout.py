"""``ctfleet rollout``: run a playbook over communes with ansible-runner; ``ctfleet playbooks``.

    ctfleet rollout workstations.yml --ct 04.281.07.07 --audit     audit a commune (changes nothing)
    ctfleet rollout site.yml --ct 04.281.07.07 --allow-disruptive  audit, remediate, audit again
    ctfleet rollout retry                                           only the hosts that failed last time
    ctfleet rollout collect --ct 04.281.07.07                      deliver audits queued by ansible-pull
    ctfleet rollout deliver                                         send the spool to the region's results service
    ctfleet playbooks generate | check                              role inputs from the control catalogue

``rollout PLAYBOOK`` is the group's default command (:class:`_DefaultRun`), so the usual
call needs no sub-command. Exit status: 0 when every host finished, 2 when any failed or
was unreachable, 1 on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click
import typer
from typer.core import TyperGroup

from ctfleet.cli.common import err, fail, out, styled
from ctfleet.core.errors import CtfleetError, InputError, Problem


class _DefaultRun(TyperGroup):
    """``ctfleet rollout X.yml ...`` means ``ctfleet rollout run X.yml ...``."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(cls=_DefaultRun, no_args_is_help=True, rich_markup_mode=None,
                  help="Roll playbooks out to communes (ansible-runner): progress per host, summary, retry, audit results.")
playbooks_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                            help="The Ansible roles' generated inputs (from standards/controls.yaml).")


def _project():
    from ctfleet.cli.main import _state
    from ctfleet.project import load_project

    return load_project(_state.get("profile"), with_fleet=False)


def _paths(project):
    from ctfleet.rollout.config import RolloutPaths

    profile = Path(project.profile.path).resolve() if project.profile.path else None
    return RolloutPaths.of(project.root, project.results_dir, profile)


def _check_scope(project, **selection) -> None:
    from ctfleet.rollout.scope import check_scope

    check_scope(project.profile.name, project.profile.region, project.registry, **selection)


def _fail(exc: Exception) -> None:
    fail(exc)


def _forward(project):
    """Sending to the region's results service when the profile names one (``results_service:``)."""
    link = project.profile.results_service
    if link is None:
        return None
    from ctfleet.results.forward import send

    return lambda batch_id, rows: send(project.spool_dir, batch_id, rows, link, project.root)


def _print_delivery(delivery, project) -> None:
    if delivery is None:
        return
    url = project.profile.results_service.url
    sent = len(delivery.stored) + len(delivery.duplicates)
    if sent:
        out.print(f"{sent} batch(es) delivered to {url}" + (f" ({len(delivery.duplicates)} already there)" if delivery.duplicates else ""))
    for batch, reason in sorted(delivery.rejected.items()):
        err.print(styled(f"batch {batch} refused by {url}: {reason} (kept in {project.spool_dir / 'rejected'})", "red"))
    if delivery.stopped:
        err.print(styled(f"{len(delivery.kept)} batch(es) kept in {project.spool_dir}: {delivery.stopped} "
                         "— `ctfleet rollout deliver` sends them when the service answers", "yellow"))


def _execute(request, paths, project=None) -> int:
    from ctfleet.rollout.command import build
    from ctfleet.rollout.progress import HostProgress, summary_table
    from ctfleet.rollout.runner import expected_tasks, mitogen_strategy_dir, run_rollout

    for note in build(request, paths, run_id="-", mitogen_strategy_dir=mitogen_strategy_dir()).notes:
        err.print(styled(note, "dim"))
    with HostProgress(err, expected=expected_tasks(paths, request)) as progress:
        outcome = run_rollout(request, paths, on_event=progress.on_event, forward=_forward(project) if project else None)
    mode = "audit" if request.audit else "rollout"
    out.print(summary_table(outcome.state, f"{mode} {Path(request.playbook).name} on {request.selection}: {outcome.runner_status}"))
    if not outcome.state.hosts:
        err.print(styled(f"no host matched {outcome.invocation.limit!r} in the inventory", "yellow"))
    out.print(f"run {outcome.run_id}: {outcome.results_written} control result(s) written to {paths.results}; "
              f"record {outcome.record}; artifacts {outcome.artifacts}")
    if project is not None:
        _print_delivery(outcome.delivery, project)
    if outcome.failed_hosts:
        out.print(f"{len(outcome.failed_hosts)} host(s) failed: {', '.join(outcome.failed_hosts)} — `ctfleet rollout retry` runs them again")
    return outcome.exit_code if outcome.state.hosts else 2


@app.command("run")
def run(playbook: str = typer.Argument(..., help="Playbook in playbooks/ (site.yml, workstations.yml, servers.yml)."),
        ct: Optional[str] = typer.Option(None, "--ct", help="One commune (HCP code)."),
        region: Optional[str] = typer.Option(None, "--region", help="A region (HCP code, e.g. 04)."),
        lot: Optional[int] = typer.Option(None, "--lot", min=1, max=3, help="A roll-out lot (waves of that lot apply)."),
        audit: bool = typer.Option(False, "--audit", help="Read-only: observe and report, change nothing."),
        allow_disruptive: bool = typer.Option(False, "--allow-disruptive",
                                              help="Also remediate disruptive controls (SSH password logins, host firewall)."),
        check: bool = typer.Option(False, "--check", help="Ansible check mode (what would change)."),
        tags: Optional[str] = typer.Option(None, "--tags", help="Only these controls/topics/levels, e.g. SYS-3,ssh."),
        skip_tags: Optional[str] = typer.Option(None, "--skip-tags"),
        forks: int = typer.Option(25, "--forks", min=1),
        inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help="Default: inventory/ctfleet_inventory.py."),
        private_key: Optional[Path] = typer.Option(None, "--private-key", envvar="CTFLEET_ROLLOUT_KEY"),
        stock: bool = typer.Option(False, "--stock", help="ansible-playbook's default settings (for comparison)."),
        mitogen: bool = typer.Option(True, "--mitogen/--no-mitogen",
                                     help="The mitogen strategy (default: the fastest that passes the booted-host suite)."),
        show_command: bool = typer.Option(False, "--show-command", help="Print the equivalent ansible-playbook command and exit.")) -> None:
    """Run PLAYBOOK on a commune, a region or a lot: audit, remediate, audit again (or --audit only)."""
    from pydantic import ValidationError

    from ctfleet.rollout.command import as_shell, build
    from ctfleet.rollout.config import RolloutRequest, Tuning
    from ctfleet.rollout.runner import mitogen_strategy_dir

    try:
        project = _project()
        paths = _paths(project)
        tuning = Tuning.stock() if stock else Tuning(forks=forks, strategy="mitogen_linear" if mitogen else "linear")
        request = RolloutRequest(playbook=playbook, ct=ct, region=region, lot=lot, audit=audit, allow_disruptive=allow_disruptive,
                                 check=check, tags=tuple(_split(tags)), skip_tags=tuple(_split(skip_tags)),
                                 inventory=str(inventory) if inventory else None,
                                 private_key=str(private_key) if private_key else None, tuning=tuning)
        _check_scope(project, ct=ct, region=region, lot=lot)
        if ct and ct not in project.registry.cts:
            raise InputError(Problem("--ct", f"unknown CT code {ct!r}", valid="an HCP code from `ctfleet registry list`"))
        if not (paths.playbooks / playbook).exists() and not Path(playbook).is_absolute():
            raise InputError(Problem("PLAYBOOK", f"no playbook {playbook!r} in {paths.playbooks}",
                                     valid=", ".join(sorted(p.name for p in paths.playbooks.glob("*.yml")))))
        if show_command:
            out.print(as_shell(build(request, paths, run_id="RUN_ID", mitogen_strategy_dir=mitogen_strategy_dir())), soft_wrap=True)
            return
    except ValidationError as exc:
        _fail(_first_error(exc))
    except CtfleetError as exc:
        _fail(exc)
    raise typer.Exit(_execute(request, paths, project))


@app.command("retry")
def retry() -> None:
    """Run the last failed rollout again on its failed hosts only."""
    from ctfleet.rollout.runner import retry_request

    try:
        project = _project()
        paths = _paths(project)
    except CtfleetError as exc:
        _fail(exc)
    request = retry_request(paths)
    if request is None:
        out.print("nothing to retry: the last rollout left no failed host")
        return
    err.print(f"retrying {request.playbook} on {', '.join(request.hosts)}")
    raise typer.Exit(_execute(request, paths, project))


@app.command("collect")
def collect(ct: Optional[str] = typer.Option(None, "--ct"), region: Optional[str] = typer.Option(None, "--region"),
            lot: Optional[int] = typer.Option(None, "--lot", min=1, max=3),
            inventory: Optional[Path] = typer.Option(None, "--inventory", "-i"),
            private_key: Optional[Path] = typer.Option(None, "--private-key", envvar="CTFLEET_ROLLOUT_KEY")) -> None:
    """Deliver audit results that hosts queued while offline (ansible-pull), exactly once."""
    from ctfleet.rollout.collect import collect_queued
    from ctfleet.rollout.config import RolloutRequest

    try:
        project = _project()
        paths = _paths(project)
        _check_scope(project, ct=ct, region=region, lot=lot)
        base = RolloutRequest(playbook="collect_audits.yml", ct=ct, region=region, lot=lot,
                              inventory=str(inventory) if inventory else None, private_key=str(private_key) if private_key else None)
    except Exception as exc:  # noqa: BLE001 - validation and input errors alike end here with one message
        _fail(exc)
    summary = collect_queued(base, paths, forward=_forward(project))
    out.print(json.dumps(summary, indent=1, default=str))
    raise typer.Exit(0 if summary["ok"] else 2)


@app.command("deliver")
def deliver() -> None:
    """Send the results spool (audits kept while the region's results service was unreachable) to that service."""
    from ctfleet.results.forward import deliver_spool

    try:
        project = _project()
        link = project.profile.results_service
        if link is None:
            where = project.profile.path or "ctfleet.yaml"
            raise InputError(Problem(where, "the profile names no results service",
                                     valid="results_service: {url: https://HOST:PORT, user: NAME, password: env:VAR}"))
    except CtfleetError as exc:
        _fail(exc)
    delivery = deliver_spool(project.spool_dir, link, project.root)
    if not (delivery.stored or delivery.duplicates or delivery.rejected or delivery.stopped):
        out.print(f"nothing to deliver: {project.spool_dir} is empty")
    _print_delivery(delivery, project)
    raise typer.Exit(0 if delivery.ok else 2)


@playbooks_app.command("generate")
def generate() -> None:
    """Write the roles' generated files (defaults, argument specs, task imports) from the catalogue."""
    from ctfleet.rollout.role_inputs import write_roles

    try:
        project = _project()
        changed = write_roles(project.norms, project.root / "playbooks")
    except CtfleetError as exc:
        _fail(exc)
    out.print(f"{len(changed)} file(s) written" + "".join(f"\n  playbooks/{c}" for c in changed))


@playbooks_app.command("check")
def check_generated() -> None:
    """Exit 1 when a generated file is not what the catalogue gives (run `ctfleet playbooks generate`)."""
    from ctfleet.rollout.role_inputs import stale_files

    try:
        project = _project()
        stale = stale_files(project.norms, project.root / "playbooks")
    except CtfleetError as exc:
        _fail(exc)
    if stale:
        _fail(InputError(Problem("playbooks/", f"{len(stale)} generated file(s) out of date: {', '.join(stale)}",
                                 valid="run `ctfleet playbooks generate` and commit the result")))
    out.print("ok: generated role files match standards/controls.yaml")


def _split(s: Optional[str]) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def _first_error(exc) -> str:
    e = exc.errors()[0]
    loc = ".".join(str(x) for x in e.get("loc", ()))
    return f"{loc + ': ' if loc else ''}{e.get('msg')}"
