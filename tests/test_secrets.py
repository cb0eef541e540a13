"""Secrets never show themselves; credential references resolve only from outside the repo."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import BaseModel

from ctfleet.core.errors import CtfleetError
from ctfleet.core.secrets import CredentialRef, Secret
from ctfleet.edges.credentials import resolve


class Holder(BaseModel):
    password: Secret
    ref: CredentialRef


def test_secret_is_masked_everywhere(caplog):
    s = Secret("hunter2-Rabat")
    h = Holder(password="hunter2-Rabat", ref="env:CTFLEET_SSH_04")
    assert "hunter2" not in str(s) + repr(s) + f"{s}" + f"{s!r}"
    assert "hunter2" not in repr(h) + str(h)
    assert "hunter2" not in h.model_dump_json() + json.dumps(h.model_dump(mode="json"))
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("connecting with %s", s)
    assert "hunter2" not in caplog.text and "<secret>" in caplog.text
    assert h.password.reveal() == "hunter2-Rabat"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(s)


def test_a_password_in_place_of_a_reference_is_refused_without_echo():
    with pytest.raises(ValueError) as exc:
        CredentialRef.parse("S3cr3t-pass")
    assert "S3cr3t" not in str(exc.value)
    assert str(exc.value) == ("value is not a credentials reference (not shown, it may be a secret); "
                              "valid: env:NAME, file:/absolute/path (outside the repository), vault:FILE#key")


def test_resolve_env_and_missing(root):
    assert resolve("env:CTFLEET_T", root, env={"CTFLEET_T": "x1"}).reveal() == "x1"
    with pytest.raises(CtfleetError) as exc:
        resolve("env:CTFLEET_NOPE", root, env={})
    assert str(exc.value) == ("credentials env:CTFLEET_NOPE: environment variable CTFLEET_NOPE is not set "
                              "(valid: export it, or use file:/path or vault:FILE#key)")


def test_resolve_file_outside_repo_only(root, tmp_path):
    f = tmp_path / "snmp.key"
    f.write_text("authkey-123\n")
    assert resolve(f"file:{f}", root, env={}).reveal() == "authkey-123"
    with pytest.raises(CtfleetError) as exc:
        resolve(f"file:{root / 'ctfleet.yaml'}", root, env={})
    assert "secret files must live outside the repository" in str(exc.value)


def test_resolve_from_ansible_vault(root, tmp_path):
    from ansible.parsing.vault import VaultLib, VaultSecret

    pw = tmp_path / "vault-pass"
    pw.write_text("vault-pw\n")
    vault = tmp_path / "creds.yml"
    vault.write_bytes(VaultLib([("default", VaultSecret(b"vault-pw"))]).encrypt("snmp_rsk: usm-secret-04\n"))
    assert b"usm-secret" not in vault.read_bytes()
    env = {"ANSIBLE_VAULT_PASSWORD_FILE": str(pw)}
    assert resolve(f"vault:{vault}#snmp_rsk", root, env=env).reveal() == "usm-secret-04"
    pw.write_text("wrong\n")
    with pytest.raises(CtfleetError) as exc:
        resolve(f"vault:{vault}#snmp_rsk", root, env=env)
    assert "cannot decrypt the vault" in str(exc.value) and "usm-secret" not in str(exc.value)
