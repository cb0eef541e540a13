"""Ansible lookup: the value behind a ctfleet credentials reference, resolved on the controller.

    "{{ lookup('ctfleet_credential', 'vault:/etc/ctfleet/backup-keys.vault#restic_01_511_01_01') }}"

The same references (``env:NAME``, ``file:/path`` outside the project, ``vault:FILE#key``)
and the same resolver (:mod:`ctfleet.edges.credentials`) as the rest of ctfleet, so a
reference server's backup password and the restore drill read one escrowed value. Errors
name the reference, never the value; use the lookup in ``no_log`` tasks, after a task
without ``no_log`` that checks the reference (``check=true`` returns ``ok``, not the value),
since ``no_log`` hides a failing lookup's error too.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: ctfleet_credential
short_description: Resolve a ctfleet credentials reference on the controller
description: [Returns the secret behind env:NAME, file:/path or vault:FILE#key (ANSIBLE_VAULT_PASSWORD_FILE for vaults).]
options:
  _terms: {description: One or more references., required: true}
  check: {description: "Return 'ok' instead of the value: for a task without no_log that fails, naming the reference, before the no_log task that uses it.", type: bool, default: false}
"""

import os
from pathlib import Path

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        from ctfleet.core.errors import CtfleetError
        from ctfleet.edges.credentials import resolve

        root = Path(os.environ.get("CTFLEET_ROOT") or Path(__file__).resolve().parents[2])
        check = bool(kwargs.get("check", False))
        out = []
        for term in terms:
            try:
                value = resolve(str(term), root)
                out.append("ok" if check else value.reveal())
            except (CtfleetError, ValueError) as exc:
                raise AnsibleError(f"ctfleet_credential: {exc}") from None
        return out
