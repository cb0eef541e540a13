"""A maintenance window silences a CT's pages in a real Alertmanager, and the page arrives
once the window has closed.

The window comes from a ``standards/maintenance.yaml`` file (loaded by the product's
loader); while it is open the CT is in a planned outage (what the exporter serves as
``ctfleet_ct_planned_outage`` and the ``PlannedOutage`` rule turns into an alert), and
the alerts are posted to Alertmanager as Prometheus does (re-sent while firing, with an
``endsAt`` a little ahead). Alertmanager runs the project's configuration with its
inhibitions and routes unchanged; only the receivers point at a webhook on loopback and
the grouping timers are seconds instead of minutes.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from ctfleet.core.maintenance import load_maintenance
from ctfleet.lab.procs.alertmanager import Alertmanager
from test_rules import AM_CONFIG, http

NAOUR, FEZNA = "05.091.07.11", "08.201.03.09"


class Pages:
    def __init__(self):
        self.received: list[tuple[float, str, str, str]] = []  # (time, receiver path, alertname, ct)
        self.lock = threading.Lock()

    def first(self, ct: str, alertname: str = "CTUnreachable") -> float | None:
        with self.lock:
            times = [t for t, _, name, c in self.received if c == ct and name == alertname]
        return min(times) if times else None


@pytest.fixture()
def webhook():
    pages = Pages()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with pages.lock:
                for a in body["alerts"]:
                    if a["status"] == "firing":
                        pages.received.append((time.time(), self.path, a["labels"]["alertname"], a["labels"].get("ct", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield pages, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def alertmanager(webhook, tmp_path):
    _, hook_port = webhook
    cfg = yaml.safe_load(AM_CONFIG.read_text(encoding="utf-8"))
    cfg["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for r in cfg["receivers"]:
        for w in r.get("webhook_configs", []):
            w["url"] = w["url"].replace("127.0.0.1:9099", f"127.0.0.1:{hook_port}")
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    with Alertmanager(config, tmp_path / "am") as am:
        yield am.start().url


def alert(name: str, ct: str, region: str, ends: datetime, **labels: str) -> dict:
    return {"labels": {"alertname": name, "ct": ct, "region": region, "job": "ctfleet", "severity": "critical", **labels},
            "endsAt": ends.isoformat()}


def test_window_inhibits_the_pages_and_they_arrive_after_it(alertmanager, webhook, registry_only, tmp_path):
    pages, _ = webhook
    base = alertmanager
    now = datetime.now(timezone.utc)
    start, end = now - timedelta(seconds=1), now + timedelta(seconds=8)
    standards = tmp_path / "standards"
    standards.mkdir()
    (standards / "maintenance.yaml").write_text(
        "windows:\n"
        f'  - ct: "{NAOUR}"\n    start: {start.isoformat()}\n    end: {end.isoformat()}\n'
        "    reason: Replacement of the VSAT modem (test)\n", encoding="utf-8")
    cts = registry_only.national.cts
    windows = load_maintenance(standards, str, {c.code: c.region_code for c in cts.values()})
    naour, fezna = cts[NAOUR], cts[FEZNA]

    suppressed_seen = False
    stop = time.monotonic() + 25
    while time.monotonic() < stop:
        t = datetime.now(timezone.utc)
        # What Prometheus would send this evaluation: both CTs unreachable; the planned
        # outage while the window is open (PlannedOutage has no `for`), endsAt ahead.
        batch = [alert("CTUnreachable", c.code, c.region_code, t + timedelta(seconds=60)) for c in (naour, fezna)]
        if windows.in_outage(naour.code, naour.region_code, t):
            batch.append(alert("PlannedOutage", naour.code, naour.region_code, t + timedelta(seconds=2), severity="info"))
        http("POST", f"{base}/api/v2/alerts", batch)
        states = {(a["labels"]["alertname"], a["labels"]["ct"]): a["status"]["state"] for a in http("GET", f"{base}/api/v2/alerts")}
        if t < end - timedelta(seconds=2) and states.get(("CTUnreachable", NAOUR)) == "suppressed":
            suppressed_seen = True
        if pages.first(NAOUR) is not None:
            break
        time.sleep(0.5)

    fezna_page, naour_page = pages.first(FEZNA), pages.first(NAOUR)
    assert suppressed_seen, "Naour's CTUnreachable was never suppressed in Alertmanager during the window"
    assert fezna_page is not None and fezna_page < end.timestamp(), "a CT outside the window is paged at once"
    assert naour_page is not None, "Naour's page never arrived after the window closed"
    assert naour_page >= end.timestamp(), f"Naour was paged {end.timestamp() - naour_page:.1f} s inside its window"
    assert naour_page < end.timestamp() + 10, f"the page came {naour_page - end.timestamp():.1f} s after the window"
    print(f"Naour paged {naour_page - end.timestamp():.1f} s after its window closed; Fezna "
          f"{fezna_page - start.timestamp():.1f} s after the window opened")
    with pages.lock:
        assert not [p for p in pages.received if p[2] == "PlannedOutage"], "PlannedOutage is never sent (noc-silent)"
        paths = {(ct, path) for _, path, name, ct in pages.received if name == "CTUnreachable"}
    assert paths == {(FEZNA, "/noc/region-08"), (NAOUR, "/noc/region-05")}  # routed by region
