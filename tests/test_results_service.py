"""The region's results service: authenticated, validating, idempotent, region-scoped —
in-process (Starlette's TestClient on SQLite) and as a real process (uvicorn, TLS) on a
real PostgreSQL, killed mid-ingest."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bcrypt
import pytest
from starlette.testclient import TestClient

from ctfleet.core.compliance import ControlResult
from ctfleet.results.batch import render_batch
from ctfleet.results.db import SqlStore
from ctfleet.results.forward import Endpoint, deliver, enqueue
from ctfleet.results.service import Scope, make_app

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def region_cts(registry, region: str) -> list[str]:
    return sorted(c for c, ct in registry.cts.items() if ct.region_code == region and ct.level.value == "commune")


def audit(ct: str, host: str, n: int = 20, fail: tuple[str, ...] = (), at: datetime = T0) -> list[ControlResult]:
    return [ControlResult(ct=ct, device=host, control=f"SYS-{i}", status="fail" if f"SYS-{i}" in fail else "pass",
                          source="audit", observed_at=at) for i in range(1, n + 1)]


def basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


@pytest.fixture()
def client(tmp_path, registry_only):
    store = SqlStore(tmp_path / "results.db")
    store.migrate()
    users = {"tech-04": bcrypt.hashpw(b"s3cret-04", bcrypt.gensalt(rounds=4)).decode()}
    scope = Scope(region="04", cts={c for c, ct in registry_only.registry.cts.items() if ct.region_code == "04"})
    with TestClient(make_app(store, scope, users, max_batch_bytes=64 * 1024)) as c:
        c.store = store
        yield c
    store.dispose()


def test_batch_needs_the_regions_credentials(client, registry_only):
    body = render_batch(audit(region_cts(registry_only.registry, "04")[0], "th01"))
    assert client.put("/v1/batches/b1", content=body).status_code == 401
    r = client.put("/v1/batches/b1", content=body, headers=basic("tech-04", "wrong"))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert client.put("/v1/batches/b1", content=body, headers=basic("tech-05", "s3cret-04")).status_code == 401
    assert client.store.counts()["result_batches"] == 0
    assert client.get("/-/healthy").json() == {"status": "ok", "region": "04"}


def test_stored_once_by_batch_id_and_conflict_on_reuse(client, registry_only):
    ct = region_cts(registry_only.registry, "04")[0]
    auth = basic("tech-04", "s3cret-04")
    body = render_batch(audit(ct, "th01", fail=("SYS-3",)))
    r1 = client.put("/v1/batches/th01-a", content=body, headers=auth)
    assert (r1.status_code, r1.json()) == (201, {"batch_id": "th01-a", "stored": 20, "changed": 20})
    r2 = client.put("/v1/batches/th01-a", content=body, headers=auth)
    assert (r2.status_code, r2.json()) == (200, {"batch_id": "th01-a", "stored": 20, "duplicate": True})
    r3 = client.put("/v1/batches/th01-a", content=render_batch(audit(ct, "th01")), headers=auth)
    assert r3.status_code == 409 and "a new batch needs a new id" in r3.json()["error"]
    assert client.store.counts() == {"result_batches": 1, "results_current": 20, "results_history": 20}
    assert client.get("/v1/batches/th01-a", headers=auth).json()["sender"] == "tech-04"
    assert client.get("/v1/batches/nope", headers=auth).status_code == 404
    client.put("/v1/batches/th01-b", content=render_batch(audit(ct, "th01", at=T0 + timedelta(hours=1))), headers=auth)
    hist = client.get("/v1/history", params={"ct": ct, "device": "th01", "control": "SYS-3"}, headers=auth).json()
    assert [(h["status"], h["previous_status"], h["batch_id"]) for h in hist] == [("fail", None, "th01-a"), ("pass", "fail", "th01-b")]


def test_bad_batch_refused_with_the_reason_and_nothing_stored(client, registry_only):
    ct = region_cts(registry_only.registry, "04")[0]
    auth = basic("tech-04", "s3cret-04")
    good = render_batch(audit(ct, "th01", n=5))
    bad = good + '{"ct": "%s", "device": "th01", "control": "SYS-9", "status": "passed", "source": "audit"}\n' % ct
    r = client.put("/v1/batches/th01-bad", content=bad, headers=auth)
    assert r.status_code == 400
    assert r.json()["error"] == "batch th01-bad refused, nothing stored"
    assert r.json()["problems"] == ["th01-bad:6: status: Input should be 'pass', 'fail', 'unknown' or 'waived'"]
    assert client.put("/v1/batches/..%2Fx", content=good, headers=auth).status_code in (400, 404)
    r = client.put("/v1/batches/big", content=good * 400, headers=auth)
    assert r.status_code == 413 and "split it" in r.json()["error"]
    assert client.store.counts() == {"result_batches": 0, "results_current": 0, "results_history": 0}


def test_other_regions_results_refused_naming_the_ct(client, registry_only):
    ours, theirs = region_cts(registry_only.registry, "04")[0], region_cts(registry_only.registry, "05")[0]
    body = render_batch(audit(ours, "th01") + audit(theirs, "th99"))
    r = client.put("/v1/batches/mixed", content=body, headers=basic("tech-04", "s3cret-04"))
    assert r.status_code == 403
    assert f"CT {theirs} is in region 05; this service takes region 04 only" in r.json()["problems"][0]
    r = client.put("/v1/batches/ghost", content=render_batch(audit("04.999.99.99", "x")), headers=basic("tech-04", "s3cret-04"))
    assert r.status_code == 403 and "not in this service's registry" in r.json()["problems"][0]
    assert client.store.counts()["results_current"] == 0


# ------------------------------------------------------------------ a real process on PostgreSQL


@pytest.fixture()
def region_profile(tmp_path) -> Path:
    p = tmp_path / "sdr-04.yaml"
    p.write_text('name: sdr-04\nregion: "04"\n')
    return p


def _ingested_whole(store: SqlStore, batches: dict[str, int]) -> dict[str, int]:
    """Per stored batch id, how many of its results are the current ones (each batch has its own hosts)."""
    from sqlalchemy import func, select

    from ctfleet.results.schema import batches as tb, current

    with store.engine.connect() as conn:
        stored = {r.batch_id: r.results for r in conn.execute(select(tb.c.batch_id, tb.c.results))}
        rows = dict(conn.execute(select(current.c.batch_id, func.count()).group_by(current.c.batch_id)).all())
    return {b: rows.get(b, 0) for b in stored} | {f"orphan:{b}": n for b, n in rows.items() if b not in stored}


@pytest.mark.component
def test_real_service_tls_killed_mid_ingest_keeps_every_acknowledged_batch(tmp_path, postgresql, region_profile, root, registry_only):
    from ctfleet.lab.procs.results_service import ResultsService

    url = postgresql.url("svc_kill")
    cts = region_cts(registry_only.registry, "04")
    svc = ResultsService(tmp_path / "svc", url, region_profile, {"tech-04": "s3cret-04", "pull-04": "p-04"}, root).start()
    acked: dict[str, int] = {}
    sent: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(k: int) -> None:
        ep = svc.endpoint("tech-04")
        for b in range(10_000):
            if stop.is_set():
                return
            bid = f"s{k}-b{b}"
            body = render_batch(audit(cts[(k * 7 + b) % len(cts)], f"h{k}-{b}", n=300)).encode()
            with lock:
                sent.append(bid)
            try:
                status, doc = ep.put(bid, body)
            except OSError:
                return  # the service died under us: this batch was not acknowledged
            if status in (200, 201):
                with lock:
                    acked[bid] = doc["stored"]

    try:
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(svc.proc.pid, signal.SIGKILL)  # a crash, in the middle of ingests
        svc.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(30)
        assert len(acked) >= 40
        assert set(sent) - set(acked), "no batch was in flight when the service died"
        store = SqlStore(url)
        whole = _ingested_whole(store, acked)
        assert not [b for b in whole if b.startswith("orphan:")], "results stored without their batch"
        assert all(whole.get(b) == n == 300 for b, n in acked.items()), "an acknowledged batch is missing or partial"
        assert all(n == 300 for n in whole.values()), "a half batch is stored"
        # restarted, the senders' unacknowledged batches go through; the acknowledged ones are duplicates
        svc.start()
        spool = tmp_path / "spool"
        for bid in sent:
            k, b = (int(x[1:]) for x in bid.split("-"))
            enqueue(spool, bid, audit(cts[(k * 7 + b) % len(cts)], f"h{k}-{b}", n=300))
        got = deliver(spool, svc.endpoint("tech-04"))
        assert got.ok and not list(spool.glob("*.jsonl"))
        assert set(got.duplicates) >= set(acked) and set(got.stored) | set(got.duplicates) == set(sent)
        assert store.counts()["result_batches"] == len(sent)
        assert store.counts()["results_current"] == 300 * len(sent)
        store.dispose()
    finally:
        stop.set()
        svc.stop()


@pytest.mark.component
def test_spool_delivery_over_tls_rejects_bad_and_foreign_batches(tmp_path, postgresql, region_profile, root, registry_only):
    from ctfleet.lab.procs.results_service import ResultsService

    ours, theirs = region_cts(registry_only.registry, "04")[0], region_cts(registry_only.registry, "05")[0]
    with ResultsService(tmp_path / "svc", postgresql.url("svc_spool"), region_profile, {"pull-04": "p-04"}, root).start() as svc:
        spool = tmp_path / "spool"
        enqueue(spool, "a-ours", audit(ours, "th01"))
        enqueue(spool, "b-theirs", audit(theirs, "th05"))
        (spool / "c-bad.jsonl").write_text('{"ct": "%s", "control": "SYS-1"}\n' % ours)
        enqueue(spool, "d-ours", audit(ours, "th02"))
        bad_auth = deliver(spool, Endpoint(svc.url, "pull-04", "nope", cafile=str(svc.tls.ca)))
        assert bad_auth.stopped and "HTTP 401" in bad_auth.stopped and len(list(spool.glob("*.jsonl"))) == 4
        no_ca = deliver(spool, Endpoint(svc.url, "pull-04", "p-04"))  # the service's CA not trusted: nothing sent
        assert no_ca.stopped and "CERTIFICATE_VERIFY_FAILED" in no_ca.stopped
        got = deliver(spool, svc.endpoint("pull-04"))
        assert got.stored == ["a-ours", "d-ours"]
        assert set(got.rejected) == {"b-theirs", "c-bad"}
        assert "this service takes region 04 only" in (spool / "rejected/b-theirs.reason").read_text()
        assert "status: Field required" in (spool / "rejected/c-bad.reason").read_text()
        assert deliver(spool, svc.endpoint("pull-04")).as_dict()["stored"] == []  # nothing left to send
