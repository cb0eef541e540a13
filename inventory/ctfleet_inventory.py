#!/usr/bin/env python3
"""Ansible dynamic inventory of the ctfleet registry and its norms.

    ansible-inventory -i inventory/ctfleet_inventory.py --graph
    ansible-playbook  -i inventory/ctfleet_inventory.py playbooks/...
    CTFLEET_PROFILE=/etc/ctfleet/region-04.yaml ansible-inventory -i inventory/ctfleet_inventory.py --list

Pass this file to ``-i``, not the ``inventory/`` directory (which also holds the HCP data).
The profile is ``CTFLEET_PROFILE`` or the project's ``ctfleet.yaml``; a regional profile
limits the inventory to its region.

Which Python: Ansible runs this file directly, so the shebang finds whatever ``python3``
is first on PATH. If that interpreter cannot import ctfleet (the usual case: system
Python, ctfleet installed only in the project's venv), the script re-executes itself once
with ``$CTFLEET_PYTHON`` or else ``<project>/.venv/bin/python``. So it works with or
without the venv on PATH.

``--host H`` prints the host's own vars plus ``ctfleet_norm_sources`` (control id ->
"file:line" of the value that applies). Ansible never calls it: ``--list`` carries
``_meta.hostvars``.

Errors go to stderr with exit status 1; Ansible shows them.
"""

import os
import sys
from pathlib import Path

_REEXEC_GUARD = "CTFLEET_INVENTORY_REEXEC"


def _import_or_reexec():
    try:
        from ctfleet import ansible_inventory  # noqa: F401
        return
    except ImportError as exc:
        why = exc
    root = Path(__file__).resolve().parent.parent
    python = os.environ.get("CTFLEET_PYTHON") or str(root / ".venv" / "bin" / "python")
    if os.environ.get(_REEXEC_GUARD) or not os.access(python, os.X_OK):
        sys.stderr.write(f"ctfleet_inventory: cannot import ctfleet with {sys.executable} ({why}); "
                         f"run it with the project's venv on PATH, or set CTFLEET_PYTHON to a python that has ctfleet "
                         f"(tried {python})\n")
        sys.exit(1)
    os.environ[_REEXEC_GUARD] = "1"
    os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


def main(argv=None) -> int:
    import argparse
    import json

    from ctfleet.ansible_inventory import host_vars, render
    from ctfleet.core.errors import CtfleetError
    from ctfleet.project import load_project

    parser = argparse.ArgumentParser(description="ctfleet dynamic inventory for Ansible (profile: $CTFLEET_PROFILE or ctfleet.yaml)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--list", action="store_true", help="all groups and hosts, with _meta.hostvars")
    mode.add_argument("--host", metavar="HOSTNAME", help="one host's vars, with where its norm values come from")
    args = parser.parse_args(argv)
    try:
        project = load_project()
        if args.list:
            data = render(project)
            json.dump(data, sys.stdout, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        else:
            data = host_vars(project, args.host)
            json.dump(data, sys.stdout, sort_keys=True, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    except CtfleetError as exc:  # bad profile or data, unknown host: one clear message, no traceback
        sys.stderr.write(f"ctfleet_inventory: {exc}\n")
        return 1
    except BrokenPipeError:  # `--list | head`
        return 0
    return 0


if __name__ == "__main__":
    _import_or_reexec()
    sys.exit(main())
