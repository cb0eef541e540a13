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


# ---------------------------------------------------------------- every other command that reads a credential
def _snmp_sources(tmp_path) -> dict[str, tuple[str, dict]]:
    """The login sources, plus SNMPv3 values that resolve but are unusable, each holding the canary."""
    out = _login_sources(tmp_path)
    out["env, SNMP JSON with a short priv_key"] = ("env:CTFLEET_CANARY_D", {"CTFLEET_CANARY_D": json.dumps(
        {"user": "ctfleet", "auth_key": CANARY, "priv_key": "short"})})
    out["env, SNMP JSON that is a list"] = ("env:CTFLEET_CANARY_E", {"CTFLEET_CANARY_E": json.dumps([CANARY])})
    out["env, not set"] = ("env:CTFLEET_CANARY_UNSET", {})
    return out


def _fleet_with_credentials(tmp_path, ref: str):
    """The two-site imported fleet, its routers on loopback with ``ref`` as their SNMP credentials."""
    import csv
    import shutil

    fleet = tmp_path / "fleet"
    shutil.rmtree(fleet, ignore_errors=True)
    shutil.copytree(__import__("pathlib").Path(__file__).parent / "fixtures/import/good", fleet)
    with (fleet / "devices.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for n, row in enumerate(rows):
        if row["mgmt_address"]:
            row["mgmt_address"] = f"127.0.9.{n + 1}"
        if row["role"] == "router":
            row["credentials_ref"] = ref
    with (fleet / "devices.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"fleet: {{source: files, dir: {fleet}}}\n")
    return profile


def test_snmp_creds_errors_never_show_the_value():
    from ctfleet.monitors.snmp_targets import SnmpCreds

    for version, text in (("v3", CANARY), ("v3", "{" + CANARY), ("v3", json.dumps({"user": CANARY, "auth_key": CANARY, "priv_key": "x"})),
                          ("v3", json.dumps([CANARY])), ("v2c", json.dumps({"user": CANARY})), ("v1", "  ")):
        with pytest.raises(ValueError) as exc:
            SnmpCreds.from_secret(version, text)
        assert CANARY not in str(exc.value) + repr(exc.value), (version, text)
        assert exc.value.__cause__ is None and (exc.value.__context__ is None or exc.value.__suppress_context__)
    creds = SnmpCreds.from_secret("v3", json.dumps({"user": "u1", "auth_key": CANARY, "priv_key": CANARY}))
    assert CANARY not in repr(creds) + str(creds) + f"{creds}"


def test_canary_never_reaches_the_collector_output_or_its_results(tmp_path, monkeypatch):
    """`ctfleet collect --once`: the routers' SNMP credentials come from each broken source; each router fails
    with a credentials error naming the reference, on screen and in the results it stores, never the canary."""
    from typer.testing import CliRunner

    from ctfleet.cli.main import app

    runner = CliRunner()
    for case, (ref, env) in _snmp_sources(tmp_path).items():
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        profile = _fleet_with_credentials(tmp_path, ref)
        results = tmp_path / "results" / case.replace(" ", "-").replace(",", "")
        config = tmp_path / "collector.yml"
        config.write_text(f"profile: {profile}\nresults_dir: {results}\nprobe: {{method: none}}\n"
                          "snmp: {timeout_seconds: 0.2, retries: 0}\n")
        result = runner.invoke(app, ["collect", "--config", str(config), "--once"])
        text = result.output + (result.stderr if result.stderr_bytes else "") + repr(result.exception or "")
        assert CANARY not in text and "s3cret" not in text, f"{case}: the collector showed the secret:\n{text}"
        assert result.exit_code == 0 and not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), text
        assert "2 failed" in text, f"{case}: {text}"
        for router in ("r-01-511-01-01", "r-01-511"):
            line = next((ln for ln in text.splitlines() if ln.strip().startswith(f"{router}: ")), "")
            assert line.strip().startswith(f"{router}: auth: credentials {ref} not usable: "), f"{case}: {text}"
        stored = "".join(p.read_text(errors="replace") for p in results.rglob("*") if p.is_file())
        assert stored and f"credentials {ref} not usable" in stored, f"{case}: no result names the credentials"
        assert CANARY not in stored, f"{case}: the results store holds the secret"
    # what /metrics serves after such a sweep (the last source's)
    import asyncio

    from ctfleet.monitors.collector import Collector, load_config
    from ctfleet.project import load_project
    from ctfleet.results import ResultsStore

    cfg = load_config(config)
    project = load_project(cfg.profile)
    collector = Collector(cfg, project.registry, project.norms, ResultsStore(tmp_path / "results-metrics"), repo_root=project.root)

    async def once():
        try:
            return await collector.run_once()
        finally:
            await collector.close()

    sweep = asyncio.run(once())
    assert {h: p.error for h, p in sweep.polls.items()} == {"r-01-511-01-01": "auth", "r-01-511": "auth"}
    metrics = collector.exporter.exposition().decode()
    assert "r-01-511-01-01" in metrics and CANARY not in metrics


def test_canary_never_reaches_the_results_service_output(tmp_path, monkeypatch):
    """`ctfleet results serve`: the database password behind every source (broken or not) holds the canary; the
    service exits with one error — the credentials' (naming the reference) or the database's — never the canary."""
    from typer.testing import CliRunner

    from ctfleet.cli.main import app
    from ctfleet.lab.procs.service import free_port

    runner = CliRunner()
    port = free_port()  # nothing listens: a password that resolves then meets a closed port
    profile = tmp_path / "sdr-04.yaml"
    profile.write_text('name: sdr-04\nregion: "04"\n')
    for case, (ref, env) in _login_sources(tmp_path).items():
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = tmp_path / "results-service.yml"
        config.write_text(f"database: postgresql://ctfleet@127.0.0.1:{port}/results\ndatabase_password: {ref}\n"
                          f"listen: 127.0.0.1:{free_port()}\nprofile: {profile}\n")
        for dry in ([], ["--dry-run"]):
            result = runner.invoke(app, ["results", "serve", "--config", str(config), *dry])
            text = result.output + (result.stderr if result.stderr_bytes else "") + repr(result.exception or "")
            assert CANARY not in text and "s3cret" not in text, f"{case}: the results service showed the secret:\n{text}"
            if dry and result.exit_code == 0:  # a password that resolves: --dry-run does not connect
                assert result.output.startswith(f"ok: {config}: region 04 (") and "ctfleet:***@127.0.0.1:" in result.output, text
                continue
            assert result.exit_code == 2 and "Traceback" not in text, f"{case}: {text}"
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: {text}"
            assert (f"error: credentials {ref}: " in lines[0]
                    or lines[0].startswith("error: results database postgresql+psycopg://ctfleet:***@127.0.0.1:")), f"{case}: {text}"
    # the sources that do not resolve say so, naming the reference
    for case in ("file, not UTF-8", "vault, malformed YAML", "vault, alias bomb"):
        ref, env = _login_sources(tmp_path)[case]
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config.write_text(f"database: postgresql://ctfleet@127.0.0.1:{port}/results\ndatabase_password: {ref}\nprofile: {profile}\n")
        result = runner.invoke(app, ["results", "serve", "--config", str(config), "--dry-run"])
        assert result.stderr.startswith(f"error: credentials {ref}: "), f"{case}: {result.stderr}"


def test_secret_keys_of_config_files_never_echo_what_was_typed(tmp_path):
    """A password typed where a reference goes (a number, a list, a URL with it inside) is refused without echo,
    by the results service's and the collector's loaders alike."""
    from ctfleet.core.errors import CtfleetError
    from ctfleet.results.db import SqlStore
    from ctfleet.results.service import load_config

    config = tmp_path / "results-service.yml"
    for typed, expected in ((CANARY, "database_password: value is not a credentials reference (not shown, it may be a secret)"),
                            ("73100591", "database_password: Input should be a valid string, value not shown (this key holds credentials)"),
                            (f"[{CANARY}]", "database_password: Input should be a valid string, value not shown (this key holds credentials)"),
                            (f"{{password: {CANARY}}}", "database_password: Input should be a valid string, value not shown (this key holds credentials)")):
        value = "73100591" if typed == "73100591" else typed
        config.write_text(f"database: results.db\ndatabase_password: {value}\n")
        with pytest.raises(CtfleetError) as exc:
            load_config(config)
        text = str(exc.value)
        assert CANARY not in text and "73100591" not in text, text
        assert expected in text, text
    # the router settings' login and age identity (references), typed as values of another type
    from ctfleet.routers.settings import load_settings

    settings = tmp_path / "routers.yaml"
    for key in ("login", "backup_identity"):
        for typed in ("73100591", f"[{CANARY}]", f"{{{CANARY}: 1}}"):
            settings.write_text(f"{key}: {typed}\n")
            with pytest.raises(CtfleetError) as exc:
                load_settings(settings)
            text = str(exc.value)
            assert CANARY not in text and "73100591" not in text, text
            assert (f"{key}: Input should be a valid string, value not shown (this key holds credentials)" in text
                    or f"{key}: value is not a credentials reference (not shown, it may be a secret)" in text), text
    # a URL holding a password that SQLAlchemy cannot parse: its own message would quote the whole URL
    for url in (f"postgresql://ctfleet:{CANARY}@127.0.0.1:port/results", f"postgresql://ctfleet:{CANARY}@[::1/results"):
        with pytest.raises(CtfleetError) as exc:
            SqlStore(url)
        assert CANARY not in str(exc.value)
        assert str(exc.value).startswith("results database: the URL does not parse (not shown, it may hold a password)")


def test_the_roles_password_check_names_the_reference_never_the_canary(root, tmp_path):
    """The reference server role and the drill resolve the escrowed restic password with the
    `ctfleet_credential` lookup in a no_log task, which hides a failing lookup's error too; the
    check task before it (the role's own, run by ansible-playbook on localhost) fails naming the
    reference, and never shows the canary, for each broken source; a good source passes it silently."""
    import os
    import subprocess
    import sys

    from ruamel.yaml import YAML

    tasks = YAML(typ="safe").load((root / "playbooks/roles/reference_server/tasks/remediate/srv_3.yml").read_text())
    check = next(t for t in tasks if "Check the escrowed repository password's reference" in t["name"])
    install = tasks[tasks.index(check) + 1]
    assert install.get("no_log") is True and "lookup('ctfleet_credential', reference_server_backup_password_ref)" in str(install)

    def tasks_of(node):
        if isinstance(node, dict):
            yield node
            for key in ("tasks", "block", "rescue", "always"):
                for t in node.get(key) or ():
                    yield from tasks_of(t)
        elif isinstance(node, list):
            for t in node:
                yield from tasks_of(t)

    drill_tasks = list(tasks_of(YAML(typ="safe").load((root / "playbooks/backup_drill.yml").read_text())))
    drill_check = next(t for t in drill_tasks if "Check the escrowed password's reference" in str(t.get("name")))
    drill_bring = drill_tasks[drill_tasks.index(drill_check) + 1]
    assert drill_bring.get("no_log") is True and "lookup('ctfleet_credential', drill_password_ref)" in str(drill_bring)
    play = tmp_path / "check.yml"
    with play.open("w") as fh:
        YAML().dump([{"hosts": "localhost", "gather_facts": False, "tasks": [check]},
                     {"hosts": "localhost", "gather_facts": False, "tasks": [drill_check]}], fh)
    sources = _login_sources(tmp_path)
    bin_dir = os.path.dirname(sys.executable)
    for case in ("vault, malformed YAML", "vault, nested value", "file, not UTF-8", "env, not set", "vault, valid"):
        ref, env = sources.get(case) or ("env:CTFLEET_CANARY_UNSET", {})
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("CTFLEET_CANARY")}
        run_env.update(env, ANSIBLE_LOOKUP_PLUGINS=str(root / "playbooks/lookup_plugins"), CTFLEET_ROOT=str(root),
                       ANSIBLE_NOCOLOR="1", PATH=bin_dir + os.pathsep + os.environ["PATH"])
        r = subprocess.run([os.path.join(bin_dir, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
                            "-e", f"reference_server_backup_password_ref={ref}", "-e", f"drill_password_ref={ref}"],
                           capture_output=True, text=True, timeout=120, env=run_env, cwd=tmp_path)
        text = r.stdout + r.stderr
        assert CANARY not in text and "s3cret" not in text, f"{case}: ansible showed the secret:\n{text}"
        if case == "vault, valid":
            assert r.returncode == 0 and "ok=2 " in text and "failed=0" in text, text  # both plays' checks passed
        else:
            assert r.returncode != 0, f"{case}: {text}"
            assert f"ctfleet_credential: credentials {ref}: " in text, f"{case}: {text}"
    # the drill's own check, failing alone
    ref, env = sources["vault, malformed YAML"]
    with play.open("w") as fh:
        YAML().dump([{"hosts": "localhost", "gather_facts": False, "tasks": [drill_check]}], fh)
    r = subprocess.run([os.path.join(bin_dir, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
                        "-e", f"drill_password_ref={ref}"], capture_output=True, text=True, timeout=120, env=run_env, cwd=tmp_path)
    text = r.stdout + r.stderr
    assert r.returncode != 0 and CANARY not in text and "DRILL | Check the escrowed password's reference" in text, text
    assert f"ctfleet_credential: credentials {ref}: the decrypted vault is not valid YAML" in " ".join(text.split()), text


def test_canary_never_reaches_the_backup_escrow_output(root, tmp_path, monkeypatch):
    """`ctfleet backups escrow`: an existing escrow vault that decrypts to broken YAML holding the canary
    is refused with the credentials error naming the reference, never the canary, and is left as it was."""
    from typer.testing import CliRunner

    from ctfleet.cli.main import app

    runner = CliRunner()
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"fleet: {{source: files, dir: {root / 'tests/fixtures/import/good'}}}\n")
    for case in ("malformed YAML", "duplicate key", "alias bomb", "not a mapping", "not UTF-8"):
        vault, env = _vault(tmp_path, case, VAULT_TEXTS[case])
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        before = vault.read_bytes()
        result = runner.invoke(app, ["--profile", str(profile), "backups", "escrow", "--ct", "01.511.01.01", "--vault", str(vault)])
        text = result.output + (result.stderr if result.stderr_bytes else "") + repr(result.exception or "")
        assert CANARY not in text and "s3cret" not in text, f"{case}: {text}"
        assert result.exit_code == 1 and "Traceback" not in text, f"{case}: {text}"
        assert f"error: credentials vault:{vault.resolve()}#restic_01_511_01_01: the decrypted vault " in result.stderr, f"{case}: {text}"
        assert vault.read_bytes() == before, f"{case}: the vault was rewritten"
    # a vault that reads: the password is made, and only the reference is printed
    vault, env = _vault(tmp_path, "valid", VAULT_TEXTS["valid"])
    result = runner.invoke(app, ["--profile", str(profile), "backups", "escrow", "--ct", "01.511.01.01", "--vault", str(vault)])
    assert result.exit_code == 0, result.output
    assert f"reference_server_backup_password_ref: vault:{vault.resolve()}#restic_01_511_01_01" in result.output
    assert CANARY not in result.output


def test_canary_never_reaches_the_rollout_delivery_output(root, tmp_path, monkeypatch):
    """`ctfleet rollout deliver` (and every rollout, which sends through the same spool): the password of the
    region's results service behind every source holds the canary; the batch stays queued, the command exits 2
    with the credentials error naming the reference (or the service unreachable), never the canary."""
    from datetime import datetime, timezone

    from typer.testing import CliRunner

    from ctfleet.cli.main import app
    from ctfleet.core.compliance import ControlResult
    from ctfleet.lab.procs.service import free_port
    from ctfleet.results.forward import enqueue

    runner = CliRunner()
    port = free_port()  # nothing listens: a password that resolves then meets a closed port
    spool = tmp_path / "spool"
    enqueue(spool, "rollout-canary-1", [ControlResult(ct="01.511.01.01", device="srv1-01-511-01-01", control="SYS-1",
                                                      status="pass", source="audit",
                                                      observed_at=datetime(2026, 12, 1, tzinfo=timezone.utc))])
    profile = tmp_path / "profile.yaml"
    unresolved = 0
    for case, (ref, env) in _login_sources(tmp_path).items():
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        profile.write_text(f"fleet: {{source: files, dir: {root / 'tests/fixtures/import/good'}}}\nspool_dir: {spool}\n"
                           f"results_service: {{url: 'http://127.0.0.1:{port}', user: technicien-01, password: '{ref}'}}\n")
        result = runner.invoke(app, ["--profile", str(profile), "rollout", "deliver"])
        text = result.output + (result.stderr if result.stderr_bytes else "") + repr(result.exception or "")
        assert CANARY not in text and "s3cret" not in text, f"{case}: the delivery showed the secret:\n{text}"
        assert result.exit_code == 2 and "Traceback" not in text, f"{case}: {text}"
        assert f"1 batch(es) kept in {spool}: " in " ".join(text.split()), f"{case}: {text}"
        if f"credentials {ref}: " in " ".join(text.split()):
            unresolved += 1
        else:
            assert case.startswith("env") or case in ("file, broken JSON", "vault, valid"), f"{case}: {text}"
        assert sorted(p.name for p in spool.iterdir()) == ["rollout-canary-1.jsonl"], f"{case}: the batch left the spool"
    assert unresolved == 7, "the broken sources must fail as credentials errors naming the reference"
    # a password typed into the profile in place of a reference is refused without echo
    for typed in (CANARY, "73100591", f"[{CANARY}]"):
        profile.write_text(f"results_service: {{url: 'http://127.0.0.1:{port}', user: t, password: {typed}}}\n")
        result = runner.invoke(app, ["--profile", str(profile), "rollout", "deliver"])
        text = result.output + (result.stderr if result.stderr_bytes else "")
        assert result.exit_code != 0 and CANARY not in text and "73100591" not in text, text
        assert "results_service.password" in text, text


def test_canary_never_reaches_the_ansible_router_module_output(root, tmp_path):
    """playbooks/routers.yml (the ctfleet_router module on the controller, then each router's outcome task) run by
    ansible-playbook with a broken login in each kind of source: the router fails naming the credentials reference;
    the canary is nowhere in Ansible's output, even at -v (the module's whole result)."""
    import os
    import subprocess
    import sys

    profile = tmp_path / "profile.yaml"
    profile.write_text(f"fleet: {{source: files, dir: {root / 'tests/fixtures/import/good'}}}\n")
    settings = tmp_path / "routers.yaml"
    sources = _login_sources(tmp_path)
    bin_dir = os.path.dirname(sys.executable)
    for case in ("vault, malformed YAML", "vault, valid"):  # a vault: the module once died on it (see the action plugin)
        ref, env = sources[case]
        settings.write_text(f"login: {ref}\n")
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("CTFLEET_CANARY")}
        run_env.update(env, CTFLEET_PROFILE=str(profile), CTFLEET_ROUTER_SETTINGS=str(settings), CTFLEET_ROOT=str(root),
                       ANSIBLE_NOCOLOR="1", PATH=bin_dir + os.pathsep + os.environ["PATH"])
        r = subprocess.run([os.path.join(bin_dir, "ansible-playbook"), "playbooks/routers.yml", "-v", "-e", "ctfleet_router_action=diff",
                            "--limit", "r-01-511-01-01"], capture_output=True, text=True, timeout=180, env=run_env, cwd=root)
        text = r.stdout + r.stderr
        assert CANARY not in text and "s3cret" not in text, f"{case}: ansible showed the secret:\n{text}"
        assert r.returncode == 2, f"{case}: {text}"
        assert f"credentials {ref}: " in text and "failed=1" in text, f"{case}: {text}"
