"""The backup password of each CT's reference server, escrowed off the server.

One Ansible Vault file (outside the project) holds a random password per CT under
``restic_<ct slug>``; the role reads it through the credentials reference
``vault:FILE#restic_<slug>`` on the controller (``lookup('ctfleet_credential', ...)``), and
a restore on a fresh host opens the off-site repository with the same value. A CT's
password is made once and never replaced here: a new one would leave the existing
repositories unreadable. Written with ansible-core's own VaultLib, so ``ansible-vault
view FILE`` reads it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ctfleet.core.errors import InputError, Problem
from ctfleet.core.models import code_slug


def key_for(ct_code: str) -> str:
    """``restic_01_511_01_01`` for CT 01.511.01.01."""
    return "restic_" + code_slug(ct_code).replace("-", "_")


def escrow(vault_file: Path, ct_code: str, project_root: Path, env=None) -> tuple[str, bool]:
    """Make sure the vault holds a password for ``ct_code``; returns (credentials reference, created)."""
    from ansible.parsing.vault import VaultLib, VaultSecret
    from ruamel.yaml import YAML

    env = os.environ if env is None else env
    vault_file = Path(vault_file).expanduser().resolve()
    root = project_root.resolve()
    if vault_file == root or root in vault_file.parents:
        raise InputError(Problem(str(vault_file), "the escrow vault must live outside the project",
                                 valid=f"a path outside {root}, e.g. /etc/ctfleet/backup-keys.vault"))
    pw_file = env.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if not pw_file:
        raise InputError(Problem("ANSIBLE_VAULT_PASSWORD_FILE", "not set", valid="a file holding the vault's password"))
    try:
        vault = VaultLib([("default", VaultSecret(Path(pw_file).read_bytes().strip()))])
    except OSError as exc:
        raise InputError(Problem(pw_file, f"cannot read: {exc.strerror}")) from None
    key = key_for(ct_code)
    ref = f"vault:{vault_file}#{key}"
    table: dict = {}
    if vault_file.exists():
        from ctfleet.core.secrets import CredentialRef
        from ctfleet.edges.credentials import vault_table

        # the credentials resolver's own reading: aliases refused, errors never quote the passwords
        table = dict(vault_table(CredentialRef.parse(ref), vault, vault_file.read_bytes()))
    if key in table:
        return ref, False
    table[key] = secrets.token_urlsafe(32)
    import io

    buf = io.StringIO()
    YAML().dump(dict(sorted(table.items())), buf)
    data = vault.encrypt(buf.getvalue().encode("utf-8"))
    vault_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = vault_file.with_name(vault_file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, vault_file)
    return ref, True
