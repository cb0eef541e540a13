"""``ctfleet routers``: backup, diff, audit and push the CTs' routers, from the norms.

Thin: it loads the project (the profile decides which fleet and results directory),
selects the routers, runs :class:`ctfleet.routers.ops.RouterOps` with a Rich progress
bar, and prints the summary. Exit 1 when any router failed, timed out or reverted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ctfleet.core.errors import InputError, Problem

app = typer.Typer(help="Routers: intended configuration from the norms; backup, diff, audit and safe push over SSH.",
                  no_args_is_help=True)

from ctfleet.cli.common import err, out, styled  # noqa: E402
from ctfleet.cli.common import reports_errors as _errors  # noqa: E402

CtOpt = typer.Option(None, "--ct", help="Only the routers of this CT (HCP code); repeatable.")
HostOpt = typer.Option(None, "--host", help="Only this router (hostname); repeatable.")
ConcOpt = typer.Option(None, "--concurrency", "-j", min=1, max=1000, help="Routers at once (default: settings, 20).")
SettingsOpt = typer.Option(None, "--settings", envvar="CTFLEET_ROUTER_SETTINGS", help="Router settings YAML.")
RepoOpt = typer.Option(None, "--backup-repo", help="Git repository of backups (outside the project).")
JsonOpt = typer.Option(False, "--json", help="Print the outcomes as JSON.")


def _project():
    from ctfleet.cli.main import _state
    from ctfleet.project import load_project

    return load_project(_state.get("profile"))


def _setup(settings_file, backup_repo, cts, hosts, project=None):
    from ctfleet.routers.ops import RouterOps, select_routers

    p = project or _project()
    ops = RouterOps.from_project(p, settings_file, backup_repo)
    jobs, bad = select_routers(p.registry, p.norms, cts or (), hosts or ())
    if not jobs and not bad:
        raise InputError(Problem("selection", "no router matches", valid="--ct with a CT that has a router, or --host with a router's hostname"))
    return ops, jobs, bad


def _run(action, ops, jobs, bad, concurrency, revert_after=None, allow_disruptive=False, **kw):
    with Progress(SpinnerColumn(), TextColumn(f"{action}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("", total=len(jobs))
        report = ops.run(action, jobs, concurrency=concurrency, revert_after=revert_after, pre_failed=bad,
                         allow_disruptive=allow_disruptive, **kw,
                         on_start=lambda j: bar.update(task, description=j.device.hostname),
                         on_done=lambda o: bar.advance(task))
    return report


_STYLE = {"ok": "green", "changed": "green", "in-norm": "green", "failed": "red", "timeout": "red", "reverted": "yellow"}


def _summary(report, as_json: bool) -> None:
    if as_json:
        rows = [dict(hostname=o.hostname, ct=o.ct, status=o.status, summary=o.summary, error_kind=o.error_kind,
                     seconds=o.seconds, **({"diff": o.data["diff"]} if "diff" in o.data else {}),
                     **({"results": [r.model_dump(mode="json") for r in o.data.get("results", [])]} if o.data.get("results") else {}))
                for o in report.outcomes]
        sys.stdout.write(json.dumps({"action": report.action, "counts": report.counts(), "commit": report.commit,
                                     "outcomes": rows}, ensure_ascii=False, indent=1) + "\n")
        return
    t = Table(title=f"routers {report.action}: " + ", ".join(f"{n} {k}" for k, n in sorted(report.counts().items())))
    for col in ("router", "CT", "status", "what happened", "s"):
        t.add_column(col, justify="right" if col == "s" else "left")
    for o in report.outcomes:
        status = o.status + (f" ({o.error_kind})" if o.error_kind and o.status != "reverted" else "")
        t.add_row(o.hostname, o.ct, styled(status, _STYLE[o.status]), o.summary, f"{o.seconds:.1f}")
    out.print(t)


def _exit(report) -> None:
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@_errors
def backup(ct: Optional[list[str]] = CtOpt, host: Optional[list[str]] = HostOpt, concurrency: Optional[int] = ConcOpt,
           settings: Optional[Path] = SettingsOpt, backup_repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """Fetch each router's running configuration; commit it masked (for diffs) and encrypted
    in full (for restores) to the backup repository; write the age metrics."""
    from ctfleet.routers.ops import select_routers

    p = _project()
    ops, jobs, bad = _setup(settings, backup_repo, ct, host, p)
    fleet, _ = select_routers(p.registry, p.norms)  # the metrics keep every router's series, not only this run's
    report = _run("backup", ops, jobs, bad, concurrency, fleet=fleet)
    _summary(report, as_json)
    if not as_json:
        out.print(f"backup repository {ops.backups.path}: " + (f"commit {report.commit[:10]}" if report.commit else "no change, no commit")
                  + f"; {report.results_written} RTR-7 result(s) written to the results store"
                  + (f"; metrics in {report.metrics_file}" if report.metrics_file else ""))
    _exit(report)


@app.command()
@_errors
def diff(ct: Optional[list[str]] = CtOpt, host: Optional[list[str]] = HostOpt, concurrency: Optional[int] = ConcOpt,
         settings: Optional[Path] = SettingsOpt, as_json: bool = JsonOpt) -> None:
    """Intended (from the norms) vs running configuration, per router; changes nothing."""
    ops, jobs, bad = _setup(settings, None, ct, host)
    report = _run("diff", ops, jobs, bad, concurrency)
    if not as_json:
        for o in report.outcomes:
            if o.data.get("diff"):
                out.print(o.data["diff"], highlight=False, end="")
    _summary(report, as_json)
    _exit(report)


@app.command()
@_errors
def audit(ct: Optional[list[str]] = CtOpt, host: Optional[list[str]] = HostOpt, concurrency: Optional[int] = ConcOpt,
          settings: Optional[Path] = SettingsOpt, backup_repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """Judge each router against its CT's norms, per control (pass/fail/unknown); writes results, changes nothing."""
    ops, jobs, bad = _setup(settings, backup_repo, ct, host)
    report = _run("audit", ops, jobs, bad, concurrency)
    if not as_json:
        t = Table(title="controls not passing")
        for col in ("router", "control", "status", "observed", "expected", "evidence"):
            t.add_column(col)
        rows = [(o.hostname, r) for o in report.outcomes for r in o.data.get("results", []) if r.status.value != "pass"]
        for host, r in sorted(rows, key=lambda x: (x[1].status.value != "fail", x[0], x[1].control)):  # failures first
            t.add_row(host, r.control, r.status.value, _v(r.observed), _v(r.expected), r.evidence)
        if t.row_count:
            out.print(t)
    _summary(report, as_json)
    if not as_json:
        out.print(f"{report.results_written} result(s) written to the results store (source router_audit)")
    _exit(report)


def _v(x) -> str:
    return "—" if x is None else str(x)


@app.command()
@_errors
def push(ct: Optional[list[str]] = CtOpt, host: Optional[list[str]] = HostOpt, concurrency: Optional[int] = ConcOpt,
         settings: Optional[Path] = SettingsOpt,
         revert_after: Optional[int] = typer.Option(None, "--revert-after", min=10, max=7200,
                                                    help="Seconds before an unconfirmed change reverts by itself (IOS: whole minutes)."),
         allow_disruptive: bool = typer.Option(False, "--allow-disruptive",
                                               help="Also push controls the catalogue marks disruptive (RTR-5, the management ACL)."),
         yes: bool = typer.Option(False, "--yes", help="Do not ask before changing routers."),
         as_json: bool = JsonOpt) -> None:
    """Apply the difference to the norms, with the revert armed on each router; confirm only when management still works."""
    ops, jobs, bad = _setup(settings, None, ct, host)
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(Problem("--yes", f"push would change up to {len(jobs)} router(s); not asking without a terminal",
                                     valid="--yes to proceed (diff shows what would change)"))
        typer.confirm(f"Push the norms to {len(jobs)} router(s)?", abort=True)
    report = _run("push", ops, jobs, bad, concurrency, revert_after, allow_disruptive)
    _summary(report, as_json)
    _exit(report)


@app.command()
@_errors
def restore(ct: Optional[list[str]] = CtOpt, host: Optional[list[str]] = HostOpt,
            rev: Optional[str] = typer.Option(None, "--rev", help="Backup revision (a commit of the backup repository; "
                                              "default: each router's latest backup)."),
            concurrency: Optional[int] = ConcOpt, settings: Optional[Path] = SettingsOpt, backup_repo: Optional[Path] = RepoOpt,
            revert_after: Optional[int] = typer.Option(None, "--revert-after", min=10, max=7200,
                                                       help="Seconds before an unconfirmed restore reverts by itself."),
            yes: bool = typer.Option(False, "--yes", help="Do not ask before changing routers."),
            as_json: bool = JsonOpt) -> None:
    """Re-apply a backed-up configuration (secrets from the credentials references), with the revert armed on the router."""
    ops, jobs, bad = _setup(settings, backup_repo, ct, host)
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(Problem("--yes", f"restore would change up to {len(jobs)} router(s); not asking without a terminal",
                                     valid="--yes to proceed"))
        typer.confirm(f"Restore {len(jobs)} router(s) to revision {rev or 'latest'}?", abort=True)
    report = _run("restore", ops, jobs, bad, concurrency, revert_after, rev=rev)
    _summary(report, as_json)
    _exit(report)


@app.command()
@_errors
def keygen(identity_file: Path = typer.Option(..., "--identity-file",
                                              help="Where to write the new age identity (mode 0600; never inside the project).")) -> None:
    """Make the key pair of the encrypted backups: the identity goes to a file, the public key to the settings."""
    import os

    from ctfleet.routers.backups import new_identity
    from ctfleet.routers.settings import check_backup_path

    path = check_backup_path(identity_file, _project().root)  # the same rule as the repository: outside the project
    if path.exists():
        raise InputError(Problem(str(path), "exists already; a new key would make the older backups unreadable",
                                 valid="a new file name (keep the old identity as long as its backups are kept)"))
    identity, recipient = new_identity()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"# ctfleet router backups; public key: {recipient}\n{identity.reveal()}\n")
    out.print(f"identity written to {path} (keep it off the collector host: restores only need it)\n"
              f"router settings:\n  backup_recipients: [{recipient}]\n  backup_identity: file:{path}", markup=False)


@app.command()
@_errors
def schedule(out_dir: Path = typer.Option(..., "--out", help="Directory to write the systemd units into (then copy to /etc/systemd/system)."),
             settings: Optional[Path] = SettingsOpt,
             every_hours: Optional[int] = typer.Option(None, "--every", min=1, max=24,
                                                       help="Hours between runs (default: a quarter of the strictest RTR-7 norm)."),
             command: str = typer.Option("/usr/local/bin/ctfleet", "--ctfleet", help="The ctfleet command on the collector host."),
             user: str = typer.Option("ctfleet", "--user", help="The account the job runs as.")) -> None:
    """Write the collector host's systemd timer that backs up every router and refreshes the age metrics."""
    from ctfleet.routers.ops import select_routers
    from ctfleet.routers.schedule import backup_units

    p = _project()
    jobs, _ = select_routers(p.registry, p.norms)
    units = backup_units(jobs, settings_file=settings, every_hours=every_hours, command=command, user=user)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        out.print(f"wrote {out_dir / name}")
