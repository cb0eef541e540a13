"""``ctfleet backups``: the reference servers' backup password in escrow, and the restore drill.

Thin: ``escrow`` calls :func:`ctfleet.backups.escrow.escrow`; ``drill`` runs
``playbooks/backup_drill.yml`` through the rollout runner on the drill host, turns its
report into a result (:func:`ctfleet.backups.drill.verdict`) and writes it to the results
store. Exit 1 when the drill did not pass.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from ctfleet.cli.common import out
from ctfleet.cli.common import reports_errors as _errors

app = typer.Typer(help="Reference servers' backups: escrowed repository passwords and restore drills.", no_args_is_help=True)


def _project():
    from ctfleet.cli.main import _state
    from ctfleet.project import load_project

    return load_project(_state.get("profile"))


@app.command()
@_errors
def escrow(ct: list[str] = typer.Option(..., "--ct", help="HCP code of the CT (repeatable)."),
           vault: Path = typer.Option(..., "--vault", help="Ansible Vault file of the escrowed passwords (outside the project); "
                                      "its password from ANSIBLE_VAULT_PASSWORD_FILE.")) -> None:
    """Make (once) each CT's backup password in the vault and print the reference the role takes."""
    from ctfleet.backups.escrow import escrow as do_escrow
    from ctfleet.core.errors import InputError, Problem

    p = _project()
    for code in ct:
        if code not in p.registry.cts:
            raise InputError(Problem(f"--ct {code}", "no such CT in the registry", valid="an HCP code, e.g. 01.511.01.01"))
        ref, created = do_escrow(vault, code, p.root)
        out.print(f"{code}: {'new password escrowed' if created else 'password already escrowed (kept)'}; "
                  f"reference_server_backup_password_ref: {ref}", soft_wrap=True)  # one line: copied as is


@app.command()
@_errors
def drill(ct: str = typer.Option(..., "--ct", help="HCP code of the CT whose reference server is drilled."),
          on: str = typer.Option(..., "--on", help="The host to restore on (inventory name; never the server itself)."),
          inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help="Inventory (default: the ctfleet inventory)."),
          private_key: Optional[Path] = typer.Option(None, "--private-key", help="SSH key for the hosts."),
          results: Optional[Path] = typer.Option(None, "--results", help="Results store (default: the profile's)."),
          as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Restore the CT's server from its off-site copy on another host with the escrowed password; compare checksums."""
    from ctfleet.backups.drill import read_report, verdict
    from ctfleet.core.compliance import Source
    from ctfleet.results import ResultsStore
    from ctfleet.rollout.config import RolloutPaths, RolloutRequest
    from ctfleet.rollout.runner import run_rollout

    p = _project()
    store = ResultsStore(results or p.results_dir)
    with tempfile.TemporaryDirectory(prefix="ctfleet-drill-") as tmp:
        report_path = Path(tmp) / "report.json"
        paths = RolloutPaths.of(p.root, store.root)
        if inventory:
            paths = paths.model_copy(update={"inventory": inventory.resolve()})
        request = RolloutRequest(playbook="backup_drill.yml", hosts=(on,), private_key=str(private_key) if private_key else None,
                                 host_key_checking=False if private_key else True,
                                 extravars={"ctfleet_drill_ct": ct, "ctfleet_drill_report": str(report_path)})
        run = run_rollout(request, paths)
        if not report_path.exists():
            first = {h: s.first_error for h, s in run.state.hosts.items() if s.first_error}
            report = {"ct": ct, "server": "", "drill_host": on, "error": f"the drill play stopped early: {first or run.exit_code}"}
        else:
            report = read_report(report_path)
    if not report.get("server"):
        from ctfleet.core.errors import InputError, Problem

        raise InputError(Problem(f"--ct {ct}", report.get("error", "no reference server found"),
                                 valid="a CT whose reference server is in the inventory with its off-site repository"))
    result = verdict(report)
    store.write_batch(Source.AUDIT, f"drill-{report['server']}", [result])
    if as_json:
        sys.stdout.write(json.dumps({**report, "status": result.status.value}, indent=1) + "\n")
    else:
        out.print(f"{result.status.value}: {result.evidence}\nresult written to {store.root} (control {result.control}, "
                  f"device {result.device})")
    if result.status.value != "pass":
        raise typer.Exit(1)
