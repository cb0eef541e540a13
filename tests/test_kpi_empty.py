"""Nothing observed, nothing met: with an empty results store and no sweep, no CT meets its
norms and every CT is "not assessed" — read through Prometheus's HTTP API (the real
exporter, a real Prometheus with the project's rules), in the report (``ctfleet report``:
JSON, HTML) and on the command line."""

from __future__ import annotations

import json
import re
import urllib.request

from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from conftest import ROOT
from ctfleet.lab.procs.prometheus import Prometheus, prometheus_config
from ctfleet.monitors.exporter import CtfleetCollector, build_snapshot
from ctfleet.monitors.http import serve
from ctfleet.results import ResultsStore

DIMS = ("lot", "segment", "region")


def test_empty_store_and_no_sweep_means_nothing_meets(project, tmp_path):
    registry = project.registry
    store = ResultsStore(tmp_path / "results")  # empty
    exporter = CtfleetCollector(build_snapshot(registry, project.norms, None, stored=list(store.iter_results())))
    reg = CollectorRegistry()
    reg.register(exporter)
    httpd, _ = serve(reg, "127.0.0.1", 0, version=exporter.version)
    addr = f"127.0.0.1:{httpd.server_address[1]}"
    urllib.request.urlopen(f"http://{addr}/metrics", timeout=60).read()  # render once, outside a scrape
    rules = sorted(str(f) for f in (ROOT / "monitors/rules").glob("*.yml"))
    prom = Prometheus(tmp_path / "prometheus", prometheus_config(addr, rules, scrape_interval="1s"))
    try:
        prom.start()
        for name in ("cts", "cts_meeting_norms", "cts_failing", "cts_not_assessed"):  # each rule's first evaluation
            for suffix in ("", *(f"_by_{by}" for by in DIMS)):
                prom.wait_for(f"ctfleet:{name}:count{suffix}", 60)
        n = len(registry.cts)
        value = lambda q: [({k: v for k, v in s["metric"].items() if k != "__name__"}, float(s["value"][1]))  # noqa: E731
                           for s in prom.query(q)]
        assert value("ctfleet:cts:count") == [({}, n)]
        assert value("ctfleet:cts_meeting_norms:count") == [({}, 0)]
        assert value("ctfleet:cts_failing:count") == [({}, 0)]
        assert value("ctfleet:cts_not_assessed:count") == [({}, n)]
        for by in DIMS:
            cts = {m[by]: v for m, v in value(f"ctfleet:cts:count_by_{by}")}
            assert cts and sum(cts.values()) == n
            assert {m[by]: v for m, v in value(f"ctfleet:cts_meeting_norms:count_by_{by}")} == {k: 0 for k in cts}
            assert {m[by]: v for m, v in value(f"ctfleet:cts_not_assessed:count_by_{by}")} == cts
        # every CT's own outcome, as served
        per_ct = value('ctfleet_ct_outcome{outcome="not_assessed"} == 1')
        assert len(per_ct) == n

        out = tmp_path / "report"
        r = CliRunner().invoke(_app(), ["report", "--prometheus", prom.url, "--out", str(out), "--range", "1m"])
        assert r.exit_code == 0, r.output
        assert re.search(rf"meeting norms 0 \(0%\); failing 0 \(0%\); not assessed {n:,} \(100%\)", r.output), r.output
        doc = json.loads((out / "kpis.json").read_text(encoding="utf-8"))
        assert doc["national"]["cts_meeting_norms"] == 0 and doc["national"]["cts_not_assessed"] == n
        for by in DIMS:
            for row in doc[by]:
                assert row["cts_meeting_norms"] == 0 and row["cts_not_assessed"] == row["cts"] > 0, row
        html = (out / "report-fr.html").read_text(encoding="utf-8")
        assert 'data-dim="national" data-key="" data-kpi="cts_meeting_norms" data-value="0"' in html
        assert f'data-dim="national" data-key="" data-kpi="cts_not_assessed" data-value="{n}"' in html
    finally:
        prom.stop()
        httpd.shutdown()
        httpd.server_close()


def _app():
    from ctfleet.cli.main import app

    return app
