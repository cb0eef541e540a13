"""`ctfleet results serve` as a region runs it on one machine (SQLite, loopback), and the one
clear error the collector and the results service give when the results database cannot be
reached or refuses the password — against a closed port and a real PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import bcrypt
import pytest

from ctfleet.core.compliance import ControlResult
from ctfleet.lab.procs.service import free_port
from ctfleet.results.batch import render_batch

CTFLEET = [str(Path(sys.executable).parent / "ctfleet")]  # the installed command, as a region runs it
DB_PASSWORD = "CANARY-db-pw-91c"


def _ctfleet(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CTFLEET, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _region_profile(tmp_path: Path) -> Path:
    p = tmp_path / "sdr-04.yaml"
    p.write_text('name: sdr-04\nregion: "04"\n')
    return p


def _http(method: str, url: str, body: bytes | None = None, auth: tuple[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_results_serve_on_one_machine_stores_a_batch_and_stops_on_sigterm(tmp_path, registry_only):
    """The README's `ctfleet --profile … results serve --config …`: SQLite, plain HTTP on loopback."""
    port = free_port()
    web = tmp_path / "web-config.yml"
    web.write_text(f"basic_auth_users:\n  tech-04: '{bcrypt.hashpw(b's3cret-04', bcrypt.gensalt(rounds=4)).decode()}'\n")
    cfg = tmp_path / "results-service.yml"
    cfg.write_text(f"database: {tmp_path / 'results.db'}\nlisten: 127.0.0.1:{port}\nweb_config: {web}\n")
    profile = _region_profile(tmp_path)

    dry = _ctfleet("--profile", str(profile), "results", "serve", "--config", str(cfg), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(f"ok: {cfg}: region 04 (") and f"http://127.0.0.1:{port}/v1/batches/<id>" in dry.stdout
    assert not (tmp_path / "results.db").exists(), "--dry-run migrates nothing"
    # `python -m ctfleet.cli.main` too: the global --profile reaches the sub-command (it once was dropped there)
    as_module = subprocess.run([sys.executable, "-m", "ctfleet.cli.main", "--profile", str(profile), "results", "serve",
                                "--config", str(cfg), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert as_module.returncode == 0 and as_module.stdout == dry.stdout, as_module.stdout + as_module.stderr

    proc = subprocess.Popen([*CTFLEET, "--profile", str(profile), "results", "serve", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _http("GET", f"http://127.0.0.1:{port}/-/healthy")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the service did not come up in 60 s"
            time.sleep(0.2)
        ct = sorted(c for c, x in registry_only.registry.cts.items() if x.region_code == "04" and x.level.value == "commune")[0]
        results = [ControlResult(ct=ct, device="th01", control=f"SYS-{i}", status="pass" if i != 2 else "fail", source="audit",
                                 observed_at=datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)) for i in range(1, 6)]
        status, doc = _http("PUT", f"http://127.0.0.1:{port}/v1/batches/th01-readme", render_batch(results).encode(),
                            auth=("tech-04", "s3cret-04"))
        assert (status, doc) == (201, {"batch_id": "th01-readme", "stored": 5, "changed": 5})
        status, doc = _http("GET", f"http://127.0.0.1:{port}/v1/batches/th01-readme", auth=("tech-04", "s3cret-04"))
        assert status == 200 and doc["batch_id"] == "th01-readme" and doc["results"] == 5 and doc["sender"] == "tech-04"
        from urllib.parse import urlencode

        for control, want in (("SYS-2", "fail"), ("SYS-3", "pass")):
            status, hist = _http("GET", f"http://127.0.0.1:{port}/v1/history?" + urlencode({"ct": ct, "device": "th01", "control": control}),
                                 auth=("tech-04", "s3cret-04"))
            assert status == 200 and [(h["status"], h["batch_id"]) for h in hist] == [(want, "th01-readme")], hist
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, err
    assert err.startswith("results service: region 04") and err.rstrip().endswith("results service: stopped"), err
    assert "Traceback" not in err
    # stopped, the batch stays in the file
    from ctfleet.results.db import SqlStore

    store = SqlStore(tmp_path / "results.db")
    assert store.counts()["result_batches"] == 1
    store.dispose()


# ---------------------------------------------------------------- the database unreachable or refusing the password
def _closed_port() -> int:
    return free_port()  # nothing listens on it


def _service_config(tmp_path: Path, database: str, password_ref: str | None = None) -> Path:
    cfg = tmp_path / "results-service.yml"
    cfg.write_text(f"database: {database}\nlisten: 127.0.0.1:{free_port()}\nprofile: {_region_profile(tmp_path)}\n"
                   + (f"database_password: {password_ref}\n" if password_ref else ""))
    return cfg


def _collector_config(tmp_path: Path, database: str) -> Path:
    cfg = tmp_path / "collector.yml"
    fleet = Path(__file__).parent / "fixtures/import/good"
    profile = tmp_path / "fleet-profile.yaml"
    profile.write_text(f"fleet: {{source: files, dir: {fleet}}}\n")
    cfg.write_text(f"profile: {profile}\nresults_dir: '{database}'\nprobe: {{method: none}}\n")
    return cfg


def _one_clear_error(proc: subprocess.CompletedProcess, shown_url: str, check: str) -> str:
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err and "sqlalchemy" not in err.lower() and "[SQL" not in err, err
    assert DB_PASSWORD not in proc.stdout + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: results database {shown_url}: "), err
    assert check in lines[0], err
    return lines[0]


def test_closed_port_is_one_clear_error_for_the_service_and_the_collector(tmp_path):
    port = _closed_port()
    url = f"postgresql://ctfleet@127.0.0.1:{port}/results"
    shown = f"postgresql+psycopg://ctfleet@127.0.0.1:{port}/results"
    want = f"cannot connect: connection refused (check that PostgreSQL runs and accepts TCP connections on 127.0.0.1:{port}"
    svc = _ctfleet("results", "serve", "--config", str(_service_config(tmp_path, url)))
    _one_clear_error(svc, shown, want)
    # the collector, at start (it migrates the schema before its first sweep)
    col = _ctfleet("collect", "--config", str(_collector_config(tmp_path, url)), "--once")
    _one_clear_error(col, shown, want)


@pytest.mark.component
def test_wrong_password_on_real_postgresql_is_one_clear_error(tmp_path, postgresql, monkeypatch):
    url = postgresql.url("pw_check")
    user = postgresql.password_user("ctfleet_pw", "right-password-1", owns="pw_check")
    db = url.replace("ctfleet@", f"{user}@")
    shown = "postgresql+psycopg://" + db.split("://", 1)[1]
    want = f"the server refused the login of user '{user}' (check the password: database_password's reference, PGPASSWORD or the URL's"
    env = {"CTFLEET_RESULTS_DB_PASSWORD": DB_PASSWORD}
    svc = _ctfleet("results", "serve", "--config", str(_service_config(tmp_path, db, "env:CTFLEET_RESULTS_DB_PASSWORD")), env=env)
    _one_clear_error(svc, shown.replace(f"{user}@", f"{user}:***@"), want)
    # with the right password it comes up: the error above was about the password, nothing else
    from ctfleet.results.service import start

    monkeypatch.setenv("CTFLEET_RESULTS_DB_PASSWORD", "right-password-1")
    _cfg, store, _scope, _web = start(_service_config(tmp_path, db, "env:CTFLEET_RESULTS_DB_PASSWORD"))
    assert store.counts()["result_batches"] == 0
    store.dispose()
    # the collector: the password in PGPASSWORD (as its Deployment gives it), then in its results URL
    col = _ctfleet("collect", "--config", str(_collector_config(tmp_path, db)), "--once", env={"PGPASSWORD": DB_PASSWORD})
    _one_clear_error(col, shown, want)
    col = _ctfleet("collect", "--config", str(_collector_config(tmp_path, db.replace(f"{user}@", f"{user}:{DB_PASSWORD}@"))), "--once")
    _one_clear_error(col, shown.replace(f"{user}@", f"{user}:***@"), want)


def test_collector_running_loop_reports_the_database_once_per_sweep_without_traceback(tmp_path, capsys):
    """The database goes away while the collector runs: each sweep says so in one line, and the loop goes on."""
    import asyncio

    from ctfleet.monitors.collector import Collector, load_config
    from ctfleet.project import load_project
    from ctfleet.results.db import SqlStore

    port = _closed_port()
    cfg_path = _collector_config(tmp_path, "unused")
    cfg = load_config(cfg_path).model_copy(update={"interval_seconds": 1.0})
    project = load_project(cfg.profile)
    collector = Collector(cfg, project.registry, project.norms, None, credentials=lambda d: (_ for _ in ()).throw(ValueError("no")),
                          repo_root=project.root)
    store = SqlStore(f"postgresql://ctfleet:{DB_PASSWORD}@127.0.0.1:{port}/results")  # the database, gone since the start
    collector.store = store

    async def two_sweeps() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.6, stop.set)
        await collector.run_forever(stop)

    asyncio.run(two_sweeps())
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("collector: sweep failed")]
    assert len(lines) == 2, err
    assert all(ln == f"collector: sweep failed: results database postgresql+psycopg://ctfleet:***@127.0.0.1:{port}/results: "
                     f"cannot connect: connection refused (check that PostgreSQL runs and accepts TCP connections on 127.0.0.1:{port}, "
                     "and the URL's host and port)" for ln in lines), err
    assert DB_PASSWORD not in err and "Traceback" not in err
    store.dispose()
