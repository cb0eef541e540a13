"""``ctfleet results serve``: a region's results service on one machine.

Thin: :func:`ctfleet.results.service.start` reads the configuration, resolves the database
password reference and migrates the schema; :func:`ctfleet.results.service.run` serves
until SIGTERM or Ctrl-C. The profile (``--profile``, before the sub-command, or the
configuration's ``profile:``) names the region whose results the service takes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ctfleet.cli.common import err, fail, out

app = typer.Typer(help="The region's results service: audit batches in over HTTPS, into the results database.",
                  no_args_is_help=True)


@app.command()
def serve(config: Path = typer.Option(..., "--config", help="Results service YAML (database, database_password, listen, "
                                      "web_config, profile; see ctfleet/results/service.py)."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Validate the configuration, migrate nothing, exit.")) -> None:
    """Serve the results endpoint of the profile's region until SIGTERM or Ctrl-C (in-flight batches finish first)."""
    from ctfleet.cli.main import _state
    from ctfleet.core.errors import CtfleetError
    from ctfleet.results.service import describe, run, start

    profile = _state.get("profile")
    try:
        cfg, store, scope, web = start(config, str(profile) if profile else None, migrate=not dry_run)
    except (CtfleetError, ValueError, OSError) as exc:
        fail(exc, 2)
    if dry_run:
        out.print(f"ok: {config}: {describe(cfg, store, scope, web)}", soft_wrap=True)
        return
    err.print(f"results service: {describe(cfg, store, scope, web)}", soft_wrap=True)
    run(cfg, store, scope, web)
    err.print("results service: stopped")
