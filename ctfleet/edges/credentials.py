"""Resolve credential references into :class:`~ctfleet.core.secrets.Secret` values.

Sources, in the order operators usually meet them:

* ``env:NAME`` — an environment variable (CI, containers, a technician's shell);
* ``file:/path`` — a file outside the repository (mode 0600 recommended), e.g. a mounted
  Kubernetes secret; refused if it lies inside the project, so no secret is committed;
* ``vault:FILE#key`` — a key of an Ansible Vault-encrypted YAML file, decrypted with
  ansible-core's own VaultLib (the password comes from ``ANSIBLE_VAULT_PASSWORD_FILE``),
  so teams keep using the vault they already have.

Errors name the reference, never the value: no parser message is passed on (YAML and
UTF-8 errors quote the document, which is the secret), only what is wrong and the line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from ctfleet.core.errors import InputError, Problem
from ctfleet.core.secrets import CredentialRef, Secret
from ctfleet.core.yamlio import YamlContentError, read_tree


def resolve(ref: CredentialRef | str, repo_root: Path, env: Mapping[str, str] | None = None) -> Secret:
    ref = ref if isinstance(ref, CredentialRef) else CredentialRef.parse(ref)
    env = os.environ if env is None else env
    if ref.scheme == "env":
        if ref.target not in env:
            raise InputError(Problem(f"credentials {ref}", f"environment variable {ref.target} is not set",
                                     valid="export it, or use file:/path or vault:FILE#key"))
        return Secret(env[ref.target])
    if ref.scheme == "file":
        path = Path(ref.target).resolve()
        if _inside(path, repo_root):
            raise InputError(Problem(f"credentials {ref}", "secret files must live outside the repository",
                                     valid=f"a path outside {repo_root}"))
        try:
            return Secret(path.read_text(encoding="utf-8").rstrip("\n"))
        except OSError as exc:
            raise InputError(Problem(f"credentials {ref}", f"cannot read: {exc.strerror}")) from None
        except UnicodeDecodeError:
            raise InputError(Problem(f"credentials {ref}", "the file is not UTF-8 text (content not shown)")) from None
    if ref.scheme == "vault":
        return _from_vault(ref, repo_root, env)
    raise AssertionError(ref.scheme)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _from_vault(ref: CredentialRef, repo_root: Path, env: Mapping[str, str]) -> Secret:
    from ansible.parsing.vault import VaultLib, VaultSecret  # ansible-core's vault: same format as ansible-vault

    file_part, key = ref.target.split("#", 1)
    vault_file = Path(file_part)
    pw_file = env.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if not pw_file:
        raise InputError(Problem(f"credentials {ref}", "ANSIBLE_VAULT_PASSWORD_FILE is not set",
                                 valid="a file holding the vault password"))
    try:
        password = Path(pw_file).read_bytes().strip()
        data = vault_file.read_bytes()
    except OSError as exc:
        raise InputError(Problem(f"credentials {ref}", f"cannot read {exc.filename}: {exc.strerror}")) from None
    table = vault_table(ref, VaultLib([("default", VaultSecret(password))]), data)
    if key not in table:
        raise InputError(Problem(f"credentials {ref}", f"key {key!r} not found in the vault",
                                 valid="one of the vault's top-level keys"))
    value = table[key]
    if isinstance(value, (dict, list)):
        raise InputError(Problem(f"credentials {ref}", f"the value of key {key!r} is not text (a mapping or list; not shown)"))
    return Secret(str(value))


def vault_table(ref: CredentialRef, vault, data: bytes) -> dict:
    """The vault file's ``data`` decrypted with ``vault`` (a VaultLib) as a mapping; errors name
    ``ref`` and say what is wrong, never quote the content. Shared with the backup escrow."""
    try:
        plain = vault.decrypt(data)
    except Exception:  # AnsibleError subclasses; never show the data
        raise InputError(Problem(f"credentials {ref}", "cannot decrypt the vault (wrong password or not a vault file)")) from None
    return _vault_table(ref, plain)


def _vault_table(ref: CredentialRef, plain: bytes) -> dict:
    """The decrypted vault as a mapping; errors say what is wrong and where, never quote the content."""
    def fail(what: str) -> InputError:
        return InputError(Problem(f"credentials {ref}", what))

    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("the decrypted vault is not UTF-8 text") from None
    try:
        table = read_tree(text)
    except YamlContentError as exc:
        where = f"line {exc.line}; " if exc.line else ""
        raise fail(f"the decrypted vault {exc.content_free} ({where}content not shown)") from None
    except Exception:  # noqa: BLE001 - whatever the parser raises quotes the secret; say only that it failed
        raise fail("the decrypted vault cannot be read as YAML (content not shown)") from None
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise fail("the decrypted vault is not a mapping of keys to values")
    return table
