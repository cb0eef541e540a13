"""The programme's targets as data, monthly KPI snapshots, and the report's targets table."""

from __future__ import annotations

import json
from datetime import date

import pytest

from conftest import edit
from ctfleet.core.errors import InputError, InputErrors
from ctfleet.core.targets import load_targets, status
from ctfleet.reports.history import against_targets, load_history, quarterly, take_snapshot, write_snapshot
from ctfleet.reports.programme_report import Names, collect
from ctfleet.reports.programme_report.formats import render_html, render_json
from test_report import _recorded

SOURCES = {"dgct-2021", "ctfleet-proposal", "dnssi"}


def test_the_shipped_targets_load_with_sources_and_lines(root):
    targets = {t.kpi: t for t in load_targets(root / "standards", source_ids=SOURCES)}
    assert set(targets) == {"cts_connected", "cts_meeting_norms", "cts_equipped", "cts_hosted", "mutualisations"}
    c = targets["cts_connected"]
    assert (c.share, c.deadline, c.deadline_end) == (1.0, "2022-Q4", date(2022, 12, 31))
    assert targets["cts_equipped"].deadline == "2022-Q2" and targets["mutualisations"].denominator == "mutualisations_declared"
    path, line = c.source.rsplit(":", 1)
    assert "kpi: cts_connected" in (root / path).read_text(encoding="utf-8").splitlines()[int(line) - 1]


@pytest.mark.parametrize("old, new, message", [
    ("kpi: cts_hosted", "kpi: cts_housed", "standards/targets.yaml:26: targets[3].kpi: unknown KPI 'cts_housed'"),
    ("kpi: cts_hosted", "kpi: cts_connected", "standards/targets.yaml:26: targets[3].kpi: KPI 'cts_connected' has two targets"),
    ("deadline: 2022-Q2", "deadline: T2 2022", "standards/targets.yaml:23: targets[2].deadline: 'T2 2022' is not a quarter (valid: YEAR-Qn"),
    ("target: 100\n    deadline: 2022-Q2", "target: 120\n    deadline: 2022-Q2", "standards/targets.yaml:22: targets[2].target"),
    ("source: dgct-2021, ref: \"indicateur « Nombre de CTs connectées »", "source: dgct-2012, ref: \"x",
     "standards/targets.yaml:15: targets[0].sources[0]: unknown source 'dgct-2012'"),
    ("    deadline: 2022-Q4\n    sources: [{source: dgct-2021, ref: \"indicateur « Nombre de CTs connectées »",
     "    sources: [{source: dgct-2021, ref: \"indicateur « Nombre de CTs connectées »",
     "targets[0].deadline: required key is missing"),
])
def test_each_bad_target_names_file_line_and_what_is_valid(data_copy, old, new, message):
    edit(data_copy / "standards/targets.yaml", old, new)
    with pytest.raises((InputError, InputErrors)) as e:
        load_targets(data_copy / "standards", show=lambda p: str(p.relative_to(data_copy)), source_ids=SOURCES)
    assert message in str(e.value), str(e.value)


def _snap(month: str, **nat) -> dict:
    base = {"cts": 100, "cts_connected": 0, "cts_meeting_norms": 0, "cts_equipped": 0, "cts_hosted": 0,
            "mutualisations": 0, "mutualisations_declared": 10}
    return {"month": month, "at": 0.0, "source": "test", "fleet": "test", "national": dict(base, **nat), "lot": [], "region": []}


def test_snapshots_are_written_whole_once_a_month_and_read_back(tmp_path):
    d = tmp_path / "history" / "kpi"
    p = write_snapshot(d, _snap("2026-07", cts_connected=40))
    assert p.name == "2026-07.json" and json.loads(p.read_text())["national"]["cts_connected"] == 40
    with pytest.raises(InputError) as e:
        write_snapshot(d, _snap("2026-07", cts_connected=41))
    assert "a snapshot for 2026-07 is already recorded" in str(e.value) and "--replace" in str(e.value)
    assert json.loads(p.read_text())["national"]["cts_connected"] == 40  # the recorded month is kept
    write_snapshot(d, _snap("2026-07", cts_connected=41), replace=True)
    write_snapshot(d, _snap("2026-09", cts_connected=60))
    write_snapshot(d, _snap("2026-10", cts_connected=70))
    assert not list(d.glob(".*"))  # no temporary file left
    history = load_history(d)
    assert [s["month"] for s in history] == ["2026-07", "2026-09", "2026-10"]
    assert [(q, s["national"]["cts_connected"]) for q, s in quarterly(history)] == [("2026-Q3", 60), ("2026-Q4", 70)]


@pytest.mark.parametrize("name, text, message", [
    ("2026-13.json", "{}", "'2026-13.json' is not a month's snapshot"),
    ("2026-08.json", "{not json", "2026-08.json:1: not a JSON snapshot"),
    ("2026-08.json", json.dumps(_snap("2026-07")), "2026-08.json: month, national.cts: not a KPI snapshot"),
])
def test_a_bad_history_file_is_named(tmp_path, name, text, message):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_history(tmp_path)
    assert message in str(e.value), str(e.value)


def test_kpis_against_targets_by_quarter(root):
    targets = load_targets(root / "standards", source_ids=SOURCES)
    history = [_snap("2022-03", cts_connected=50, cts_equipped=20), _snap("2022-06", cts_connected=80, cts_equipped=90),
               _snap("2022-12", cts_connected=100, cts_equipped=95, mutualisations=4)]
    now = dict(_snap("2023-02")["national"], cts_connected=100, cts_equipped=96, cts_meeting_norms=30, mutualisations=10)
    at = 1_675_900_000.0  # 2023-02-09
    table = against_targets(targets, history, now, at)
    assert table["quarters"] == ["2022-Q1", "2022-Q2", "2022-Q4"] and table["current_quarter"] == "2023-Q1"
    rows = {r["kpi"]: r for r in table["rows"]}
    assert rows["cts_connected"]["quarters"] == [0.5, 0.8, 1.0] and rows["cts_connected"]["status"] == "met"
    assert rows["cts_equipped"]["quarters"] == [0.2, 0.9, 0.95] and rows["cts_equipped"]["status"] == "overdue"
    assert rows["mutualisations"]["now"] == 1.0 and rows["mutualisations"]["status"] == "met"
    assert rows["mutualisations"]["quarters"][-1] == 0.4
    early = against_targets(targets, history, now, 1_650_000_000.0)  # 2022-04-15: before the T4 deadline
    assert {r["kpi"]: r["status"] for r in early["rows"]}["cts_meeting_norms"] == "open"
    assert status(targets[0], None, date(2023, 1, 1)) == "no_data"


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_report_shows_each_kpi_against_its_target_and_deadline(registry_only, root, lang):
    names = Names.from_project(registry_only)
    targets = load_targets(root / "standards", source_ids=SOURCES)
    at = 1_790_000_000.0  # 2026-09: every deadline of 2022 has passed
    qa, qr, _ = _recorded(at)
    history = [_snap("2026-06", cts_connected=10), _snap("2026-08", cts_connected=12)]
    data = collect(qa, qr, names, at, "1h", 3600, points=6, targets=targets, history=history)
    html = render_html(data, names, lang, "http://prom")
    assert 'data-table="targets"' in html
    assert 'data-target="cts_connected" data-status="overdue"' in html  # 11 of 14 connected, deadline 2022-Q4
    assert 'data-quarter="2026-Q2" data-value="0.1"' in html and 'data-quarter="2026-Q3" data-value="0.12"' in html
    assert '<bdi dir="ltr">2022-Q2</bdi>' in html  # the equipped deadline
    assert ('Objectifs du programme' if lang == "fr" else 'أهداف البرنامج') in html
    out = json.loads(render_json(data, names))
    row = {r["kpi"]: r for r in out["targets"]["rows"]}["mutualisations"]
    assert (row["value"], row["of"], row["now"]) == (3, 4, 0.75)
    # the programme table has the hosted column, per dimension and national
    assert 'data-kpi="cts_hosted" data-value="9"' in html


def test_snapshot_reads_the_kpis_at_one_instant(registry_only):
    at = 1_790_000_000.0
    qa, _, seen = _recorded(at)
    snap = take_snapshot(lambda q: qa(q, at), at, "http://prom", "test fleet")
    assert snap["month"] == "2026-09" and {t for _, t in seen} == {at}
    assert snap["national"]["cts_hosted"] == 9 and snap["national"]["mutualisations_declared"] == 4
    assert [r["region"] for r in snap["region"]] == ["01", "02"] and snap["lot"][0]["cts_hosted"] == 5
