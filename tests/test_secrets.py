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


# ---------------------------------------------------------------- the canary: a secret planted in every source
CANARY = "CANARY-7f3a9-s3cret"
VAULT_PW = "vault-pw-canary-test"

# What a vault may decrypt to, each holding the canary where a parser error would quote it.
VAULT_TEXTS = {
    "valid": f"login: '{CANARY}'\n",
    "malformed YAML": f'login: {{"username": "admin", "password": "{CANARY}"\n',
    "duplicate key": f"login: x\nlogin: {CANARY}\n",
    "bad indentation": f"login:\n  a: 1\n b: {CANARY}\n",
    "tab": f"login:\n\t- {CANARY}\n",
    "alias bomb": "a: &a [" + CANARY + "]\n" + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
                                                    for p, c in zip("abcdefgh", "bcdefghi")),
    "not a mapping": f"- {CANARY}\n",
    "not UTF-8": f"login: {CANARY}\udcff\n",
    "key missing": f"other: {CANARY}\n",
    "nested value": f"login: {{password: {CANARY}}}\n",
}


def _vault(tmp_path, name: str, text: str):
    from ansible.parsing.vault import VaultLib, VaultSecret

    pw = tmp_path / "vault-pass"
    pw.write_text(VAULT_PW + "\n")
    path = tmp_path / f"{name.replace(' ', '-')}.vault.yml"
    data = text.encode("utf-8", "surrogateescape")
    path.write_bytes(VaultLib([("default", VaultSecret(VAULT_PW.encode()))]).encrypt(data))
    assert CANARY.encode() not in path.read_bytes()
    return path, {"ANSIBLE_VAULT_PASSWORD_FILE": str(pw)}


@pytest.mark.parametrize("case", sorted(VAULT_TEXTS))
def test_vault_canary_never_in_an_error(case, root, tmp_path):
    path, env = _vault(tmp_path, case, VAULT_TEXTS[case])
    try:
        value = resolve(f"vault:{path}#login", root, env=env)
    except CtfleetError as exc:
        text = str(exc) + repr(exc) + "".join(map(str, exc.args))
        assert CANARY not in text and "s3cret" not in text
        assert case != "valid"
        assert text.startswith(f"credentials vault:{path}#login: ")
        assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__), "the parser's exception (and its snippet) must not chain"
    else:
        assert case == "valid", f"{case}: a broken vault resolved to {value!r}"
        assert value.reveal() == CANARY


def test_vault_errors_say_what_is_wrong_without_the_content(root, tmp_path):
    cases = {
        "malformed YAML": "the decrypted vault is not valid YAML (line 2; content not shown)",
        "duplicate key": "the decrypted vault is not valid YAML (line 2; content not shown)",
        "alias bomb": "the decrypted vault uses YAML aliases (*name), which ctfleet refuses (line 2; content not shown)",
        "not a mapping": "the decrypted vault is not a mapping of keys to values",
        "not UTF-8": "the decrypted vault is not UTF-8 text",
        "key missing": "key 'login' not found in the vault (valid: one of the vault's top-level keys)",
        "nested value": "the value of key 'login' is not text (a mapping or list; not shown)",
    }
    for case, expected in cases.items():
        path, env = _vault(tmp_path, case, VAULT_TEXTS[case])
        with pytest.raises(CtfleetError) as exc:
            resolve(f"vault:{path}#login", root, env=env)
        assert str(exc.value) == f"credentials vault:{path}#login: {expected}", case


def test_file_and_env_canary_never_in_an_error(root, tmp_path):
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    (secret_dir / "bad-utf8").write_bytes(CANARY.encode() + b"\xff\xfe")
    with pytest.raises(CtfleetError) as exc:
        resolve(f"file:{secret_dir / 'bad-utf8'}", root, env={})
    assert CANARY not in str(exc.value)
    assert str(exc.value) == f"credentials file:{secret_dir / 'bad-utf8'}: the file is not UTF-8 text (content not shown)"
    with pytest.raises(CtfleetError) as exc:
        resolve(f"file:{secret_dir}", root, env={})
    assert str(exc.value) == f"credentials file:{secret_dir}: cannot read: Is a directory"
    # a password typed in place of a reference, in each scheme
    for text in (CANARY, f"env:{CANARY}", f"file:{CANARY}", f"vault:{CANARY}"):
        with pytest.raises((ValueError, CtfleetError)) as exc:
            resolve(text, root, env={CANARY: CANARY})
        assert CANARY not in str(exc.value)


def _login_sources(tmp_path) -> dict[str, tuple[str, dict]]:
    """Every way a router login reaches ctfleet, each broken so that a careless error would quote the canary."""
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir(exist_ok=True)
    broken_json = '{"username": "admin", "password": "%s"' % CANARY
    (secret_dir / "login.json").write_text(broken_json)
    (secret_dir / "login-bytes").write_bytes(CANARY.encode() + b"\xff")
    out = {
        "env, not JSON": ("env:CTFLEET_CANARY_A", {"CTFLEET_CANARY_A": CANARY}),
        "env, broken JSON": ("env:CTFLEET_CANARY_B", {"CTFLEET_CANARY_B": broken_json}),
        "env, JSON without password": ("env:CTFLEET_CANARY_C", {"CTFLEET_CANARY_C": '{"username": "%s"}' % CANARY}),
        "file, broken JSON": (f"file:{secret_dir / 'login.json'}", {}),
        "file, not UTF-8": (f"file:{secret_dir / 'login-bytes'}", {}),
    }
    for case in ("malformed YAML", "duplicate key", "bad indentation", "alias bomb", "not UTF-8", "nested value", "valid"):
        path, env = _vault(tmp_path, case, VAULT_TEXTS[case])
        out[f"vault, {case}"] = (f"vault:{path}#login", env)
    return out


def test_canary_never_reaches_router_command_output(root, tmp_path, monkeypatch):
    """`ctfleet routers backup|diff|audit`, plain and --json: the login behind every source is broken and holds
    the canary; each router fails with a credentials error that never quotes it."""
    from typer.testing import CliRunner

    from ctfleet.cli.main import app

    runner = CliRunner()
    profile = tmp_path / "profile.yaml"  # the two-site imported fleet: loads in a third of a second
    profile.write_text(f"fleet: {{source: files, dir: {root / 'tests/fixtures/import/good'}}}\n")
    commands = (["backup", "--backup-repo", str(tmp_path / "backups")], ["diff"], ["audit", "--backup-repo", str(tmp_path / "backups")])
    for n, (case, (ref, env)) in enumerate(_login_sources(tmp_path).items()):
        settings = tmp_path / "routers.yaml"
        settings.write_text(f"login: {ref}\n")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for command in commands if n == 0 else commands[:1]:  # every source through backup; every command with one source
            for as_json in ([], ["--json"]):
                args = ["--profile", str(profile), "routers", *command, "--host", "r-01-511-01-01", "--settings", str(settings), *as_json]
                result = runner.invoke(app, args)
                text = result.output + (result.stderr if result.stderr_bytes else "") + repr(result.exception or "")
                assert CANARY not in text, f"{case}: {' '.join(args)} showed the secret:\n{text}"
                assert "Traceback" not in text and not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), text
                assert result.exit_code == 1, f"{case}: {text}"
                assert "credentials" in text, f"{case}: {text}"
