"""The Grafana dashboards: generated from code and committed up to date, valid against the
Grafana Foundation SDK's types, and every panel's PromQL answered by a real Prometheus
fed by the real exporter (Grafana itself is not packaged for these machines)."""

from __future__ import annotations

import enum
import json
import types
import typing

import pytest
from ruamel.yaml import YAML

from conftest import ROOT
from ctfleet.reports.dashboards import build_all, panel_queries, regions_from_project, substitute

DASHBOARDS = ROOT / "monitors/dashboards"


@pytest.fixture(scope="module")
def generated(project):
    return build_all(regions_from_project(project))


def test_committed_dashboards_are_the_generated_ones(generated):
    for name, doc in generated.items():
        path = DASHBOARDS / name
        assert path.exists(), f"{path} missing: run python -m ctfleet.reports.dashboards --out monitors/dashboards"
        assert json.loads(path.read_text(encoding="utf-8")) == doc, f"{path} is stale: regenerate it"
    assert {p.name for p in DASHBOARDS.glob("*.json")} == set(generated)


def test_provisioning_files_are_valid_yaml():
    prov = YAML(typ="safe").load((DASHBOARDS / "provisioning/dashboards.yaml").read_text())
    assert prov["apiVersion"] == 1 and prov["providers"][0]["type"] == "file"
    ds = YAML(typ="safe").load((DASHBOARDS / "provisioning/datasources.yaml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"


# ------------------------------------------------------------------ SDK types
def _check(value, hint, path: str, errors: list[str]) -> None:
    """Value against a type hint of the SDK's generated models (enums by value, unions, containers)."""
    if hint is typing.Any or hint is object:
        if hasattr(value, "to_json") and hasattr(type(value), "from_json"):
            _check(value, type(value), path, errors)  # e.g. a panel's options: typed by its plugin
        return
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        branch_errors: list[list[str]] = []
        for h in typing.get_args(hint):
            if h is type(None) and value is not None:
                continue
            e: list[str] = []
            _check(value, h, path, e)
            if not e:
                return
            branch_errors.append(e)
        errors.extend(min(branch_errors, key=len) if branch_errors else [f"{path}: expected None"])
        return
    if hint is type(None):
        if value is not None:
            errors.append(f"{path}: expected None")
        return
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            errors.append(f"{path}: {value!r} not in {typing.get_args(hint)}")
        return
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        (item,) = typing.get_args(hint) or (typing.Any,)
        for i, v in enumerate(value):
            _check(v, item, f"{path}[{i}]", errors)
        return
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a dict")
            return
        args = typing.get_args(hint)
        for k, v in value.items():
            _check(v, args[1] if args else typing.Any, f"{path}.{k}", errors)
        return
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if not (isinstance(value, hint) or value in {m.value for m in hint}):
            errors.append(f"{path}: {value!r} is not a {hint.__name__} ({[m.value for m in hint]})")
        return
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{path}: expected a number, got {value!r}")
        return
    if isinstance(hint, type) and hint in (str, int, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            errors.append(f"{path}: expected {hint.__name__}, got {value!r}")
        return
    if isinstance(hint, type):
        if isinstance(value, dict) and hasattr(hint, "from_json"):
            # Some SDK decoders keep nested models as dicts (e.g. a panel's transformations): decode them too.
            from grafana_foundation_sdk.cog.encoder import JSONEncoder

            decoded = hint.from_json(value)
            if json.loads(json.dumps(decoded, cls=JSONEncoder)) != value:
                errors.append(f"{path}: {value!r} does not round-trip as {hint.__name__}")
            value = decoded
        if not isinstance(value, hint):
            errors.append(f"{path}: expected {hint.__name__}, got {type(value).__name__}")
            return
        if hasattr(value, "to_json"):
            for name, h in typing.get_type_hints(type(value)).items():
                _check(getattr(value, name, None), h, f"{path}.{name}", errors)


def test_dashboards_decode_into_the_sdk_types_without_loss(generated):
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.runtime import UnknownDataquery
    from grafana_foundation_sdk.models import dashboard as dm, prometheus as mp

    plugins.register_default_plugins()
    for name, doc in generated.items():
        model = dm.Dashboard.from_json(doc)
        # Nothing dropped or renamed: an unknown key or a misspelt field would not survive.
        again = json.loads(json.dumps(model, cls=JSONEncoder))
        assert again == doc, name
        errors: list[str] = []
        _check(model, dm.Dashboard, name, errors)
        assert not errors, "\n".join(errors[:20])
        for panel in model.panels:
            if isinstance(panel, dm.RowPanel):
                continue
            assert panel.type_val in {"stat", "table", "timeseries", "bargauge"}, panel.type_val
            # Options decoded into the panel plugin's own typed class (not left as a dict).
            assert not isinstance(panel.options, dict), f"{name}: {panel.title}: options not typed"
            assert panel.targets, f"{name}: {panel.title}: no query"
            for t in panel.targets:
                assert isinstance(t, mp.Dataquery) and not isinstance(t, UnknownDataquery), f"{name}: {panel.title}"
                assert t.datasource == {"type": "prometheus", "uid": "${datasource}"} or t.datasource.uid == "${datasource}"


def test_dashboards_cover_what_the_noc_watches(generated):
    national = {p["title"] for p in generated["ctfleet-national.json"]["panels"]}
    assert {"Connectées", "Conformes aux normes", "Équipées", "KPI par région", "CT hors ligne", "CT les moins conformes"} <= national
    region_exprs = " ".join(q["expr"] for q in panel_queries(generated["ctfleet-region.json"]))
    for series in ("ctfleet_link_rtt_seconds", "ctfleet_ct_norm_rtt_max_seconds", "ctfleet_link_loss_ratio",
                   "ctfleet_ct_norm_loss_max_ratio", "ctfleet_ct_control_failing", "ctfleet_ct_connected"):
        assert series in region_exprs
    ct_exprs = " ".join(q["expr"] for q in panel_queries(generated["ctfleet-ct.json"]))
    assert "ctfleet_ct_norm_uplink_utilisation_max_ratio" in ct_exprs
    # The CT's three outcomes (meets / failing / not assessed), its stale results and hosting.
    ct_panels = {p["title"]: p for p in generated["ctfleet-ct.json"]["panels"]}
    outcome = ct_panels["Normes : résultat"]
    assert 'outcome="meets"' in outcome["targets"][0]["expr"] and 'outcome="failing"' in outcome["targets"][0]["expr"]
    texts = {v["text"] for m in outcome["fieldConfig"]["defaults"]["mappings"] for v in m["options"].values()}
    assert texts == {"conforme", "en échec", "non évaluée"}
    assert "ctfleet_ct_results_stale" in ct_exprs and "ctfleet:ct_hosted" in ct_exprs
    assert "Hébergées" in national
    # Region names are HCP's, from the registry.
    text = json.dumps(generated["ctfleet-region.json"], ensure_ascii=False)
    assert "Tanger-Tétouan-Al Hoceima" in text and "Dakhla-Oued Ed-Dahab" in text


# ------------------------------------------------------------------ PromQL on a real Prometheus
REGION = "10"  # a region of the synthetic roll-out with CTs down and controls failing


@pytest.fixture(scope="module")
def fed(project, tmp_path_factory):
    from ctfleet.lab.report_feed import feed_prometheus

    registry = project.national.scoped(REGION)
    with feed_prometheus(registry, project.norms, ROOT, tmp_path_factory.mktemp("dash-prom"), steps=3, hold_seconds=4.0) as f:
        yield f


@pytest.mark.component
def test_every_panel_query_parses_and_returns_series(generated, fed):
    prom = fed.prometheus
    # The CT a NOC operator would open: connected, with failing controls and uplink counters.
    cands = prom.query('max by (ct) (ctfleet_ct_control_failing) and on (ct) (max by (ct) (ctfleet_ct_connected) == 1)')
    assert cands, "the fed Prometheus has no connected CT with a failing control"
    ct = sorted(c["metric"]["ct"] for c in cands)[0]
    variables = {"region": REGION, "ct": ct, "datasource": "ctfleet"}
    failures, checked = [], 0
    for name, doc in generated.items():
        for q in panel_queries(doc):
            expr = substitute(q["expr"], variables)
            assert "$" not in expr, f"{name}: {q['panel']}: unexpanded variable in {expr}"
            try:
                if q["instant"]:
                    res = prom.query(expr)
                else:
                    res = prom.api("query_range", query=expr, start=f"{fed.started:.3f}", end=f"{fed.ended:.3f}", step="2")["result"]
            except Exception as exc:  # noqa: BLE001 - collect every bad query, then fail once
                failures.append(f"{name}: {q['panel']} [{q['ref']}]: {expr}: {exc}")
                continue
            checked += 1
            if not res:
                failures.append(f"{name}: {q['panel']} [{q['ref']}]: no series for {expr}")
    assert not failures, "\n".join(failures)
    assert checked >= 50


def test_the_type_check_catches_bad_values(generated):
    """The checker above is not a rubber stamp: a bad enum value or a misspelt key fails it."""
    import copy

    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import dashboard as dm

    plugins.register_default_plugins()
    doc = copy.deepcopy(generated["ctfleet-national.json"])
    stat = next(p for p in doc["panels"] if p["type"] == "stat")
    stat["options"]["textMode"] = "value-and-name"  # the enum's value is value_and_name
    errors: list[str] = []
    _check(dm.Dashboard.from_json(doc), dm.Dashboard, "bad", errors)
    assert any("textMode" in e or "text_mode" in e for e in errors), errors

    doc = copy.deepcopy(generated["ctfleet-national.json"])
    doc["panels"][1]["gridpos"] = doc["panels"][1].pop("gridPos")  # misspelt key: dropped by the decoder
    assert json.loads(json.dumps(dm.Dashboard.from_json(doc), cls=JSONEncoder)) != doc
