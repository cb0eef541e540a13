"""The KPI report without a browser: the map from the TopoJSON, the figures from injected
query functions, the HTML/CSV/JSON rendering, the command's errors."""

from __future__ import annotations

import csv
import doctest
import io
import json
import re

import pytest
from typer.testing import CliRunner

from ctfleet.reports import geo
import importlib

from ctfleet.reports.programme_report import formats as render, i18n, prometheus_api as prom
from ctfleet.reports.programme_report.figures import Names, collect, time_grid
from ctfleet.reports.programme_report.formats import colour, render_csv, render_html, render_json


collect_mod = importlib.import_module("ctfleet.reports.programme_report.figures")


@pytest.mark.parametrize("module", [geo, collect_mod, i18n, prom, render])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.failed == 0


# ------------------------------------------------------------------ map
def test_map_has_the_twelve_hcp_regions(registry_only):
    m = geo.region_map()
    assert sorted(m.paths) == sorted(registry_only.national.regions) == [f"{i:02d}" for i in range(1, 13)]
    for code, d in m.paths.items():
        assert re.fullmatch(r"(M[-\d. L]+Z)+", d.replace("L", " L")), code
        x, y = m.label_points[code]
        assert 0 < x < m.width and 0 < y < m.height
    # Simplified, yet not a caricature: every region keeps a real outline, the file stays light.
    assert all(d.count("L") > 20 for d in m.paths.values())
    assert sum(len(d) for d in m.paths.values()) < 40_000


def test_arcs_decode_to_morocco():
    topo = geo.load_topology()
    arcs = geo.decode_arcs(topo)
    lons = [p[0] for a in arcs for p in a]
    lats = [p[1] for a in arcs for p in a]
    assert -17.2 < min(lons) < -17.0 and -1.2 < max(lons) < -0.9  # Lagouira .. Figuig
    assert 20.7 < min(lats) < 21.0 and 35.8 < max(lats) < 36.0  # to the Strait of Gibraltar


def test_shared_borders_stay_shared():
    """Simplifying arcs (not rings) keeps neighbours' borders identical: no gaps, no overlaps."""
    topo = geo.load_topology()
    uses: dict[int, int] = {}
    for g in topo["objects"]["regions"]["geometries"]:
        polys = g["arcs"] if g["type"] == "MultiPolygon" else [g["arcs"]]
        for poly in polys:
            for ring in poly:
                for i in ring:
                    uses[i if i >= 0 else ~i] = uses.get(i if i >= 0 else ~i, 0) + 1
    assert any(n == 2 for n in uses.values())  # borders between two regions exist as one arc


# ------------------------------------------------------------------ figures from recorded answers
@pytest.fixture(scope="module")
def names(registry_only):
    return Names.from_project(registry_only)


def _recorded(at: float):
    """A fake Prometheus: instant and range answers for two regions, two lots, one segment."""
    counts = {"cts": {"01": 10, "02": 4}, "cts_connected": {"01": 9, "02": 2}, "cts_meeting_norms": {"01": 6, "02": 1},
              "cts_failing": {"01": 3, "02": 2}, "cts_not_assessed": {"01": 1, "02": 1}, "cts_with_waivers": {"01": 2, "02": 0},
              "cts_equipped": {"01": 5, "02": 0}, "cts_hosted": {"01": 8, "02": 1}}
    lots = {"cts": {"1": 6, "3": 8}, "cts_connected": {"1": 6, "3": 5}, "cts_meeting_norms": {"1": 4, "3": 3},
            "cts_failing": {"1": 1, "3": 4}, "cts_not_assessed": {"1": 1, "3": 1}, "cts_with_waivers": {"1": 2, "3": 0},
            "cts_equipped": {"1": 3, "3": 2}, "cts_hosted": {"1": 5, "3": 4}}
    segs = {k: {"commune_under_15k": sum(v.values())} for k, v in counts.items()}
    dims = {"region": counts, "lot": lots, "segment": segs}
    cov = {"region": {"01": 0.6, "02": 0.3}, "lot": {"1": 0.5, "3": 0.4}, "segment": {"commune_under_15k": 0.45}}
    seen: list[tuple[str, float]] = []

    def value(promql: str) -> list[tuple[dict, float]]:
        m = re.fullmatch(r"ctfleet:(\w+):count(?:_by_(\w+))?", promql)
        if m:
            kpi, by = m.groups()
            if by:
                return [({by: k}, v) for k, v in dims[by][kpi].items()]
            return [({}, sum(counts[kpi].values()))]
        m = re.fullmatch(r"ctfleet:ct_coverage:avg(?:_by_(\w+))?", promql)
        if m:
            by = m.group(1)
            return [({by: k}, v) for k, v in cov[by].items()] if by else [({}, 0.5)]
        if promql == "ctfleet:mutualisations:total":
            return [({}, 3)]
        if promql.startswith("sum(ctfleet:mutualisations_declared:"):
            return [({}, 4)]
        if "ctfleet_ct_control_failing" in promql:
            return [({"ct": "01.511.01.0", "region": "01", "control": "RTR-2", "severity": "high"}, 1),
                    ({"ct": "02.111.01.0", "region": "02", "control": "LNK-2", "severity": "medium"}, 2),
                    ({"ct": "01.051.01.0", "region": "01", "control": "RTR-2", "severity": "high"}, 3)]
        raise AssertionError(f"unexpected query {promql}")

    def query_at(promql: str, t: float) -> list[dict]:
        seen.append((promql, t))
        return [{"metric": m, "value": [t, str(v)]} for m, v in value(promql)]

    def query_range(promql: str, start: float, end: float, step: float) -> list[dict]:
        n = int(round((end - start) / step))
        out = []
        for m, v in value(promql):
            # The figure grew linearly from half its value; no sample in the first step (a gap).
            out.append({"metric": m, "values": [[start + i * step, str(v * (0.5 + 0.5 * i / n))] for i in range(1, n + 1)]})
        return out

    return query_at, query_range, seen


def test_collect_reads_every_figure_at_one_instant(names):
    at = 1_790_000_000.0
    qa, qr, seen = _recorded(at)
    data = collect(qa, qr, names, at, "1h", 3600, points=12)
    assert {t for _, t in seen} == {at}
    assert data["national"]["cts"] == 14 and data["national"]["cts_meeting_norms"] == 7
    regions = {r["region"]: r for r in data["region"]}
    assert regions["02"]["cts_connected"] == 2 and regions["02"]["coverage"] == pytest.approx(0.3)
    assert len(data["times"]) == 13 and data["times"][-1] == at
    trend = regions["01"]["trend"]["meeting_norms"]
    assert trend[0] is None and trend[-1] == pytest.approx(0.6)  # 6 / 10 at the end; the gap is kept
    # Failing controls: most severe first, CTs by region then code, device counts kept.
    assert [f["control"] for f in data["failing"]] == ["RTR-2", "LNK-2"]
    assert [c["ct"] for c in data["failing"][0]["cts"]] == ["01.051.01.0", "01.511.01.0"]
    assert data["failing"][0]["title"] == names.controls["RTR-2"][0]


def test_time_grid_steps():
    times, step = time_grid(10_000.0, 7 * 86400, points=60)
    assert step == 10080.0 and len(times) == 61 and times[-1] == 10_000.0


def _waivers():
    from datetime import date

    from ctfleet.core.waivers import Waiver, Waivers

    # at = 2026-09-21: one waiver in force for months, one expiring in 9 days, one expired
    return Waivers([
        Waiver("01.511.01.0", None, "WS-4", "Postes sans TPM", "DGCT/DSI", date(2026, 6, 1), "DGCT/DSI/2026-40", date(2027, 3, 31), "w:1"),
        Waiver("02.*", "srv1-*", "SRV-5", "Liaison trop lente pour la copie hors site", "SDR-02", date(2026, 7, 1), "SDR-02/2026-7",
               date(2026, 9, 30), "w:9"),
        Waiver("01.511.01.0", None, "RTR-6", "Bannière en cours", "DGCT/DSI", date(2026, 1, 1), "DGCT/DSI/2026-2", date(2026, 9, 1), "w:17"),
    ])


@pytest.fixture(scope="module")
def data(names):
    at = 1_790_000_000.0
    qa, qr, _ = _recorded(at)
    return collect(qa, qr, names, at, "1h", 3600, points=12, waivers=_waivers())


def test_three_outcomes_and_waivers_in_the_page(data, names):
    assert data["national"]["cts_failing"] == 5 and data["national"]["cts_not_assessed"] == 2
    for r in data["region"] + data["lot"] + [data["national"]]:
        assert r["cts_meeting_norms"] + r["cts_failing"] + r["cts_not_assessed"] == r["cts"]
    assert [w["reference"] for w in data["waivers"]["in_force"]] == ["SDR-02/2026-7", "DGCT/DSI/2026-40"]  # expired one gone
    assert [w["reference"] for w in data["waivers"]["expiring"]] == ["SDR-02/2026-7"]
    html = render_html(data, names, "fr")
    for kpi in ("cts_failing", "cts_not_assessed", "cts_with_waivers"):
        assert f'data-dim="region" data-key="01" data-kpi="{kpi}"' in html
    assert "En échec" in html and "Non évaluées" in html and "Dérogations en vigueur" in html
    assert 'data-waiver="SDR-02/2026-7" data-expiring="1"' in html and 'data-waiver="DGCT/DSI/2026-40" data-expiring="0"' in html
    assert "DGCT/DSI/2026-2" not in html
    assert "غير مقيَّمة" in render_html(data, names, "ar")


def test_html_is_self_contained_and_attributed(data, names):
    html = render_html(data, names, "fr", "http://127.0.0.1:9090")
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "external resource in the page"
    assert "@import" not in html and "url(http" not in html
    assert "© OpenStreetMap contributors" in html and "ODbL" in html
    assert "Haut-Commissariat au Plan" in html and "CC BY 4.0" in html
    assert "@media print" in html
    assert html.count('class="region"') == 12
    assert '<html lang="fr" dir="ltr">' in html
    # Times in Morocco's legal time: 2026-09-21 14:13:20 UTC is 15:13 in Casablanca.
    assert "21/09/2026 15:13 (UTC+01:00)" in html
    # Region names are HCP's (registry), not the map file's ("Tanger-Tétouan-Al Hoceïma" there).
    assert "Tanger-Tétouan-Al Hoceima" in html and "Hoceïma" not in html


def test_arabic_page_is_right_to_left_with_registry_names(data, names):
    html = render_html(data, names, "ar", "http://127.0.0.1:9090")
    assert '<html lang="ar" dir="rtl">' in html
    assert names.regions["01"][1] in html  # طنجة-تطوان-الحسيمة (HCP), the map file says "طنجة تطوان الحسيمة"
    assert "طنجة تطوان الحسيمة" not in html
    assert names.cts["01.511.01.0"][1] in html  # failing CTs listed with their Arabic names
    assert "© OpenStreetMap contributors" in html


def test_map_colours_follow_the_meeting_norms_share(data, names):
    html = render_html(data, names, "fr")
    fills = dict(re.findall(r'<path class="region" d="[^"]+" fill="(#[0-9a-f]{6})" data-region="(\d\d)"', html)[i][::-1]
                 for i in range(12))
    assert fills["01"] == colour(0.6) and fills["02"] == colour(0.25)
    assert fills["05"] == render.NO_DATA  # no CT of region 05 in the recorded answers
    assert 'data-low-coverage="02"' in html and 'data-low-coverage="01"' not in html  # coverage 30 % < 50 %


def test_csv_has_a_bom_and_the_same_figures(data, names):
    text = render_csv(data, names, "ar")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows[0][0] == "البعد"
    nat = rows[1]
    assert nat[3:5] == ["14", "11"]
    region02 = next(r for r in rows if r[1] == "02")
    assert region02[2] == names.regions["02"][1] and region02[3] == "4"


def test_json_names_every_code(data, names):
    doc = json.loads(render_json(data, names, "http://x"))
    assert doc["region"][0]["name_ar"] == names.regions[doc["region"][0]["region"]][1]
    assert doc["failing"][0]["cts"][0]["name_fr"]
    assert doc["prometheus"] == "http://x"


def test_number_formats():
    assert i18n.fmt_int(1_590, "fr") == "1\u202f590"
    assert i18n.fmt_pct(0.5, "fr", 1) == "50,0\u00a0%"
    assert i18n.fmt_points(-0.021, "ar").startswith("−2.1")


# ------------------------------------------------------------------ command
def test_report_command_errors_are_one_line(tmp_path):
    from ctfleet.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["report", "--lang", "en", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "--lang" in r.output
    r = runner.invoke(app, ["report", "--range", "soon", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "--range" in r.output
    r = runner.invoke(app, ["report", "--prometheus", "http://127.0.0.1:9", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "cannot reach Prometheus" in r.output and "Traceback" not in r.output
    assert not list(tmp_path.iterdir())  # nothing written on failure
