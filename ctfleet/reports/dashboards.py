"""Grafana dashboards for the NOC, generated from code (Grafana Foundation SDK).

Three dashboards, written as provisioning-ready JSON under ``monitors/dashboards/``:

- ``ctfleet-national.json`` — national overview: the programme KPIs per lot (stat panels),
  the per-region table, the CTs that are down and the worst CTs, collector health;
- ``ctfleet-region.json`` — one region (``$region``): its CTs' link status, RTT and loss
  against the segment's norm, compliance per control;
- ``ctfleet-ct.json`` — one CT (``$ct``): link against its norms, uplink use, failing
  controls, devices.

Every query reads the metrics and recording rules of ``monitors/METRICS.md``; the norm
thresholds are the exporter's ``ctfleet_ct_norm_*`` series, never numbers typed here.
Region names are HCP's (from the registry), shown through value mappings. Queries use
the ``$datasource`` variable, so the same JSON imports into any Grafana.

Regenerate after a change (a test fails when the committed JSON is stale)::

    python -m ctfleet.reports.dashboards --out monitors/dashboards
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, common as cb, dashboard as db, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard as dm, prometheus as mp

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["ctfleet", "noc"]
UIDS = {"national": "ctfleet-national", "region": "ctfleet-region", "ct": "ctfleet-ct"}
NAME_JOIN = "* on (ct) group_left (name_fr) max by (ct, name_fr) (ctfleet_ct_info)"


# ------------------------------------------------------------------ small helpers
def q(expr: str, legend: str | None = None, ref: str = "A", instant: bool = False, table_format: bool = False) -> prometheus.Dataquery:
    d = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend is not None:
        d = d.legend_format(legend)
    if instant:
        d = d.instant()
    else:
        d = d.range()
    if table_format:
        d = d.format(mp.PromQueryFormat.TABLE)
    return d


def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(value=v, color=c) for v, c in steps])


def kpi_stat(title: str, exprs: list[tuple[str, str]], unit: str = "none", span: int = 6, description: str = "",
             thresholds: db.ThresholdsConfig | None = None) -> stat.Panel:
    p = (stat.Panel().title(title).datasource(DS).span(span).height(5).unit(unit)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
         .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.AREA)
         .color_mode(common.BigValueColorMode.VALUE).orientation(common.VizOrientation.HORIZONTAL))
    if description:
        p = p.description(description)
    if thresholds is not None:
        p = p.thresholds(thresholds)
    for i, (expr, legend) in enumerate(exprs):
        p = p.with_target(q(expr, legend, ref=chr(ord("A") + i)))
    return p


def _region_mapping(regions: dict[str, str]) -> list[dict]:
    return [{"type": "value", "options": {code: {"text": f"{code} {name}", "index": i}
                                          for i, (code, name) in enumerate(sorted(regions.items()))}}]


def _join_table(title: str, targets: list[prometheus.Dataquery], by: str, rename: dict[str, str], span: int = 24,
                height: int = 10, description: str = "") -> table.Panel:
    """Instant table queries joined on one label, columns renamed (Grafana transformations)."""
    p = table.Panel().title(title).datasource(DS).span(span).height(height).show_header(True)
    if description:
        p = p.description(description)
    for t in targets:
        p = p.with_target(t)
    p = p.with_transformation(dm.DataTransformerConfig(id_val="joinByField", options={"byField": by, "mode": "outer"}))
    excluded = {"Time": True}
    for i in range(1, 10):
        excluded[f"Time {i}"] = True
    p = p.with_transformation(dm.DataTransformerConfig(id_val="organize", options={"excludeByName": excluded, "renameByName": rename}))
    return p


def _norm_override(name_regex: str) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
            dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
            dm.DynamicConfigValue(id_val="custom.lineWidth", value=2)]


def _series(title: str, targets: list[prometheus.Dataquery], unit: str, span: int = 12, height: int = 9,
            norm_regex: str | None = "^norme", description: str = "") -> timeseries.Panel:
    p = (timeseries.Panel().title(title).datasource(DS).span(span).height(height).unit(unit)
         .line_width(1).fill_opacity(0).show_points(common.VisibilityMode.NEVER)
         .legend(cb.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE).placement(common.LegendPlacement.RIGHT)
                 .show_legend(True).calcs(["lastNotNull", "max"])))
    if description:
        p = p.description(description)
    for t in targets:
        p = p.with_target(t)
    if norm_regex:
        p = p.override_by_regexp(norm_regex, _norm_override(norm_regex))
    return p


def _datasource_var() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def _region_var(regions: dict[str, str]) -> db.CustomVariable:
    values = ",".join(f"{code} {name.replace(',', ' ')} : {code}" for code, name in sorted(regions.items()))
    first = sorted(regions)[0]
    return (db.CustomVariable("region").label("Région").values(values)
            .current(dm.VariableOption(selected=True, text=f"{first} {regions[first]}", value=first)))


def _base(uid: str, title: str, description: str) -> db.Dashboard:
    return (db.Dashboard(title).uid(uid).description(description).tags(TAGS).timezone("Africa/Casablanca")
            .time("now-6h", "now").refresh("1m").tooltip(dm.DashboardCursorSync.CROSSHAIR).editable()
            .with_variable(_datasource_var())
            .link(db.DashboardLink("ctfleet").type(dm.DashboardLinkType.DASHBOARDS).tags(["ctfleet"]).as_dropdown(True)))


# ------------------------------------------------------------------ dashboards
#: The programme table's shares, in its order: connected, the three outcomes (they add up
#: to the CTs), equipped, hosted. Only the good ones get red/orange/green thresholds.
OUTCOME_KPIS = (("cts_connected", "Connectées"), ("cts_meeting_norms", "Conformes aux normes"), ("cts_failing", "En échec"),
                ("cts_not_assessed", "Non évaluées"), ("cts_equipped", "Équipées"), ("cts_hosted", "Hébergées"))
GOOD = {"cts_connected", "cts_meeting_norms", "cts_equipped", "cts_hosted"}


def national_overview(regions: dict[str, str]) -> db.Dashboard:
    pct = _thresholds((None, "red"), (0.5, "orange"), (0.8, "green"))
    d = _base(UIDS["national"], "ctfleet — Vue nationale",
              "Programme KPIs per lot and region (recording rules of monitors/rules/kpi.rules.yml), CTs down, worst CTs.")
    d = d.with_row(db.Row("Indicateurs du programme, par lot"))
    d = d.with_panel(kpi_stat("CT suivies", [("ctfleet:cts:count_by_lot", "Lot {{lot}}"), ("ctfleet:cts:count", "Total")], span=4))
    for kpi, title in OUTCOME_KPIS:
        d = d.with_panel(kpi_stat(title, [(f"ctfleet:{kpi}:count_by_lot / ctfleet:cts:count_by_lot", "Lot {{lot}}"),
                                          (f"ctfleet:{kpi}:count / ctfleet:cts:count", "Total")],
                                  unit="percentunit", span=4, thresholds=pct if kpi in GOOD else None))
    d = d.with_panel(kpi_stat("Couverture des contrôles", [("ctfleet:ct_coverage:avg_by_lot", "Lot {{lot}}"), ("ctfleet:ct_coverage:avg", "Total")],
                              unit="percentunit", span=5, thresholds=pct,
                              description="Share of applicable controls with a known result: read 'meeting norms' beside it."))

    d = d.with_row(db.Row("Par région"))
    rename = {"region": "Région", "Value #A": "CT", "Value #B": "Connectées", "Value #C": "Conformes", "Value #D": "Équipées",
              "Value #E": "Couverture", "Value #F": "En échec", "Value #G": "Non évaluées", "Value #H": "Avec dérogations"}
    reg_table = _join_table("KPI par région", [
        q("ctfleet:cts:count_by_region", ref="A", instant=True, table_format=True),
        q("ctfleet:cts_connected:count_by_region", ref="B", instant=True, table_format=True),
        q("ctfleet:cts_meeting_norms:count_by_region", ref="C", instant=True, table_format=True),
        q("ctfleet:cts_failing:count_by_region", ref="F", instant=True, table_format=True),
        q("ctfleet:cts_not_assessed:count_by_region", ref="G", instant=True, table_format=True),
        q("ctfleet:cts_with_waivers:count_by_region", ref="H", instant=True, table_format=True),
        q("ctfleet:cts_equipped:count_by_region", ref="D", instant=True, table_format=True),
        q("ctfleet:ct_coverage:avg_by_region", ref="E", instant=True, table_format=True),
    ], by="region", rename=rename, span=14, height=12)
    reg_table = (reg_table.override_by_name("region", [dm.DynamicConfigValue(id_val="mappings", value=_region_mapping(regions))])
                 .override_by_name("Value #E", [dm.DynamicConfigValue(id_val="unit", value="percentunit")]))
    d = d.with_panel(reg_table)
    d = d.with_panel(_series("Conformes aux normes, par région (part)", [
        q("ctfleet:cts_meeting_norms:count_by_region / ctfleet:cts:count_by_region", "{{region}}")],
        unit="percentunit", span=10, height=12, norm_regex=None))

    d = d.with_row(db.Row("CT à traiter"))
    d = d.with_panel(_join_table("CT hors ligne", [
        q(f"max by (ct, region, segment, link) (ctfleet_ct_connected == 0) {NAME_JOIN}", ref="A", instant=True, table_format=True),
    ], by="ct", rename={"ct": "CT", "name_fr": "Nom", "region": "Région", "segment": "Segment", "link": "Liaison", "Value": "Connectée"},
        span=12, height=10, description="CTs whose router did not answer in the last sweep or whose uplink is down."))
    d = d.with_panel(_join_table("CT les moins conformes", [
        q(f"bottomk(20, max by (ct, region, segment) (ctfleet_ct_compliance_ratio) {NAME_JOIN})", ref="A", instant=True, table_format=True),
        q("max by (ct) (ctfleet_ct_coverage_ratio)", ref="B", instant=True, table_format=True),
    ], by="ct", rename={"ct": "CT", "name_fr": "Nom", "region": "Région", "segment": "Segment", "Value #A": "Conformité",
                        "Value #B": "Couverture"}, span=12, height=10,
        description="Lowest compliance ratio (passed / applicable), with coverage: unknown never counts as pass.")
        .unit("percentunit"))

    d = d.with_row(db.Row("Collecteurs"))
    d = d.with_panel(kpi_stat("Âge du dernier balayage", [("time() - max by (shard) (ctfleet_sweep_last_success_timestamp_seconds)", "{{shard}}")],
                              unit="s", span=8, thresholds=_thresholds((None, "green"), (600, "orange"), (1800, "red"))))
    d = d.with_panel(_series("Équipements interrogés par résultat", [q("sum by (result) (ctfleet_sweep_devices)", "{{result}}")],
                             unit="none", span=8, height=6, norm_regex=None))
    d = d.with_panel(_series("Durée du balayage", [q("max by (shard) (ctfleet_sweep_duration_seconds)", "{{shard}}"),
                                                   q("max by (shard) (ctfleet_sweep_interval_seconds)", "norme intervalle {{shard}}", ref="B")],
                             unit="s", span=8, height=6))
    return d


def region_view(regions: dict[str, str]) -> db.Dashboard:
    r = 'region="$region"'
    rr = 'region="$region", role="router"'
    d = _base(UIDS["region"], "ctfleet — Région", "One region's CTs: link status, RTT and loss against the segment norm, compliance per control.")
    d = d.with_variable(_region_var(regions))
    d = d.with_row(db.Row("Synthèse"))
    pct = _thresholds((None, "red"), (0.5, "orange"), (0.8, "green"))
    d = d.with_panel(kpi_stat("CT", [(f"ctfleet:cts:count_by_region{{{r}}}", "CT")], span=4))
    for kpi, title in OUTCOME_KPIS:
        d = d.with_panel(kpi_stat(title, [(f"ctfleet:{kpi}:count_by_region{{{r}}} / ctfleet:cts:count_by_region{{{r}}}", title)],
                                  unit="percentunit", span=4, thresholds=pct if kpi in GOOD else None))
    d = d.with_panel(kpi_stat("Couverture", [(f"ctfleet:ct_coverage:avg_by_region{{{r}}}", "Couverture")], unit="percentunit", span=5,
                              thresholds=pct))

    d = d.with_row(db.Row("Liaisons"))
    d = d.with_panel(_join_table("État des liaisons des CT", [
        q(f"max by (ct, segment, link) (ctfleet_ct_connected{{{r}}}) {NAME_JOIN}", ref="A", instant=True, table_format=True),
        q(f"max by (ct) (ctfleet_link_rtt_seconds{{{rr}}})", ref="B", instant=True, table_format=True),
        q(f"max by (ct) (ctfleet_ct_norm_rtt_max_seconds{{{r}}})", ref="C", instant=True, table_format=True),
        q(f"max by (ct) (ctfleet_link_loss_ratio{{{rr}}})", ref="D", instant=True, table_format=True),
        q(f"max by (ct) (ctfleet_ct_norm_loss_max_ratio{{{r}}})", ref="E", instant=True, table_format=True),
    ], by="ct", rename={"ct": "CT", "name_fr": "Nom", "segment": "Segment", "link": "Liaison", "Value #A": "Connectée",
                        "Value #B": "RTT", "Value #C": "RTT max (norme)", "Value #D": "Perte", "Value #E": "Perte max (norme)"},
        height=12)
        .override_by_regexp("Value #[BC]", [dm.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_regexp("Value #[DE]", [dm.DynamicConfigValue(id_val="unit", value="percentunit")])
        .override_by_name("Value #A", [dm.DynamicConfigValue(id_val="mappings", value=[
            {"type": "value", "options": {"0": {"text": "hors ligne", "color": "red", "index": 0},
                                          "1": {"text": "connectée", "color": "green", "index": 1}}}]),
            dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"})]))
    d = d.with_panel(_series("RTT des routeurs et norme du segment", [
        q(f"max by (ct) (ctfleet_link_rtt_seconds{{{rr}}})", "{{ct}}"),
        q(f"max by (segment) (ctfleet_ct_norm_rtt_max_seconds{{{r}}})", "norme {{segment}}", ref="B")], unit="s"))
    d = d.with_panel(_series("Perte de paquets et norme du segment", [
        q(f"max by (ct) (ctfleet_link_loss_ratio{{{rr}}})", "{{ct}}"),
        q(f"max by (segment) (ctfleet_ct_norm_loss_max_ratio{{{r}}})", "norme {{segment}}", ref="B")], unit="percentunit"))
    d = d.with_panel(bargauge.Panel().title("RTT rapporté à la norme (>100 % = hors norme)").datasource(DS).span(12).height(9)
                     .unit("percentunit").min(0).max(2).thresholds(_thresholds((None, "green"), (0.8, "orange"), (1, "red")))
                     .display_mode(common.BarGaugeDisplayMode.GRADIENT).orientation(common.VizOrientation.HORIZONTAL)
                     .with_target(q(f"topk(15, max by (ct) (ctfleet_link_rtt_seconds{{{rr}}}) / on (ct) "
                                    f"max by (ct) (ctfleet_ct_norm_rtt_max_seconds{{{r}}}))", "{{ct}}", instant=True)))
    d = d.with_panel(_series("Part des CT conformes et couverture", [
        q(f"ctfleet:cts_meeting_norms:count_by_region{{{r}}} / ctfleet:cts:count_by_region{{{r}}}", "conformes"),
        q(f"ctfleet:ct_coverage:avg_by_region{{{r}}}", "couverture", ref="B")], unit="percentunit", norm_regex=None))

    d = d.with_row(db.Row("Conformité par contrôle"))
    d = d.with_panel(bargauge.Panel().title("CT en échec par contrôle").datasource(DS).span(10).height(10)
                     .display_mode(common.BarGaugeDisplayMode.BASIC).orientation(common.VizOrientation.HORIZONTAL)
                     .thresholds(_thresholds((None, "orange"), (10, "red")))
                     .with_target(q(f"sort_desc(count by (control, severity) (max by (ct, control, severity) "
                                    f"(ctfleet_ct_control_failing{{{r}}})))", "{{control}} ({{severity}})", instant=True)))
    d = d.with_panel(table.Panel().title("Résultats des contrôles par CT").datasource(DS).show_header(True).span(14).height(10)
                     .with_target(q(f"sum by (ct, status) (ctfleet_ct_controls{{{r}}})", ref="A", instant=True, table_format=True))
                     .with_transformation(dm.DataTransformerConfig(id_val="groupingToMatrix",
                                                                   options={"rowField": "ct", "columnField": "status", "valueField": "Value"})))
    return d


def ct_view(regions: dict[str, str]) -> db.Dashboard:
    c = 'ct="$ct"'
    d = _base(UIDS["ct"], "ctfleet — CT", "One CT: link against its norms, uplink use, failing controls, devices.")
    d = d.with_variable(_region_var(regions))
    d = d.with_variable(db.QueryVariable("ct").label("CT").datasource(DS)
                        .query({"query": 'label_values(ctfleet_ct_info{region="$region"}, ct)', "refId": "ct"})
                        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.ALPHABETICAL_ASC))
    updown = [{"type": "value", "options": {"0": {"text": "non", "color": "red", "index": 0},
                                            "1": {"text": "oui", "color": "green", "index": 1}}}]
    # The CT's outcome, one of three (ctfleet_ct_outcome, DESIGN.md "KPI definitions"):
    # 2 meets, 1 failing, 0 not assessed (results missing or stale).
    outcomes = [{"type": "value", "options": {"0": {"text": "non évaluée", "color": "#8c8c8c", "index": 0},
                                              "1": {"text": "en échec", "color": "red", "index": 1},
                                              "2": {"text": "conforme", "color": "green", "index": 2}}}]
    d = d.with_row(db.Row("Synthèse"))
    d = d.with_panel(kpi_stat("Connectée", [(f"max(ctfleet_ct_connected{{{c}}})", "connectée")], span=3)
                     .mappings(updown))
    d = d.with_panel(kpi_stat("Normes : résultat", [(f'2 * max(ctfleet_ct_outcome{{{c},outcome="meets"}}) '
                                                     f'+ max(ctfleet_ct_outcome{{{c},outcome="failing"}})', "résultat")], span=4,
                              description="Conforme: every applicable control known, fresh and passing; en échec: a known "
                                          "failure; non évaluée: results missing or stale. Never conforme on paper.")
                     .mappings(outcomes))
    d = d.with_panel(kpi_stat("Résultats périmés", [(f"max(ctfleet_ct_results_stale{{{c}}})", "périmés")], span=3,
                              thresholds=_thresholds((None, "green"), (1, "orange"))))
    d = d.with_panel(kpi_stat("Équipée", [(f"max(ctfleet_ct_equipped{{{c}}})", "équipée")], span=3).mappings(updown))
    d = d.with_panel(kpi_stat("Hébergée", [(f"max(ctfleet:ct_hosted{{{c}}})", "hébergée")], span=3,
                              description="Its tenant is declared by the stacks and present, Active, in the cluster.").mappings(updown))
    d = d.with_panel(kpi_stat("Conformité / couverture", [(f"max(ctfleet_ct_compliance_ratio{{{c}}})", "conformité"),
                                                          (f"max(ctfleet_ct_coverage_ratio{{{c}}})", "couverture")],
                              unit="percentunit", span=8))
    d = d.with_panel(table.Panel().title("Fiche").datasource(DS).show_header(True).span(16).height(5)
                     .with_target(q(f"ctfleet_ct_info{{{c}}}", ref="A", instant=True, table_format=True))
                     .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                         "excludeByName": {"Time": True, "Value": True, "__name__": True, "instance": True, "job": True}})))

    d = d.with_row(db.Row("Liaison et normes"))
    d = d.with_panel(_series("Temps aller-retour et norme LNK-2", [
        q(f"ctfleet_link_rtt_seconds{{{c}}}", "moyen {{device}}"),
        q(f"ctfleet_link_rtt_max_seconds{{{c}}}", "pire {{device}}", ref="B"),
        q(f"max(ctfleet_ct_norm_rtt_max_seconds{{{c}}})", "norme RTT max", ref="C")], unit="s", span=8))
    d = d.with_panel(_series("Perte et norme LNK-3", [
        q(f"ctfleet_link_loss_ratio{{{c}}}", "{{device}}"),
        q(f"max(ctfleet_ct_norm_loss_max_ratio{{{c}}})", "norme perte max", ref="B")], unit="percentunit", span=8))
    d = d.with_panel(_series("Utilisation du lien et norme LNK-6", [
        q(f"max by (device) (rate(ctfleet_uplink_receive_bytes_total{{{c}}}[$__rate_interval])) "
          f"/ max by (device) (ctfleet_uplink_speed_bytes_per_second{{{c}}})", "réception {{device}}"),
        q(f"max(ctfleet_ct_norm_uplink_utilisation_max_ratio{{{c}}})", "norme utilisation max", ref="B")],
        unit="percentunit", span=8))
    d = d.with_panel(_series("Débit du lien", [
        q(f"rate(ctfleet_uplink_receive_bytes_total{{{c}}}[$__rate_interval]) * 8", "réception {{device}}"),
        q(f"rate(ctfleet_uplink_transmit_bytes_total{{{c}}}[$__rate_interval]) * 8", "émission {{device}}", ref="B")],
        unit="bps", span=12, norm_regex=None))
    d = d.with_panel(_series("État des équipements", [q(f"max by (device, role) (ctfleet_device_up{{{c}}})", "{{device}} ({{role}})")],
                             unit="none", span=12, norm_regex=None).min(0).max(1).mappings(updown))

    d = d.with_row(db.Row("Contrôles"))
    d = d.with_panel(_join_table("Contrôles en échec", [
        q(f"max by (control, severity) (ctfleet_ct_control_failing{{{c}}})", ref="A", instant=True, table_format=True),
    ], by="control", rename={"control": "Contrôle", "severity": "Gravité", "Value": "Équipements en échec"}, span=12))
    d = d.with_panel(bargauge.Panel().title("Contrôles applicables par statut").datasource(DS).span(12).height(10)
                     .display_mode(common.BarGaugeDisplayMode.BASIC).orientation(common.VizOrientation.HORIZONTAL)
                     .with_target(q(f"max by (status) (ctfleet_ct_controls{{{c}}})", "{{status}}", instant=True)))
    return d


# ------------------------------------------------------------------ output
def build_all(regions: dict[str, str]) -> dict[str, dict]:
    """File name -> dashboard JSON (plain dicts, as Grafana stores them)."""
    out = {}
    for name, fn in (("ctfleet-national.json", national_overview), ("ctfleet-region.json", region_view), ("ctfleet-ct.json", ct_view)):
        model = fn(regions).build()
        for i, panel in enumerate(model.panels or [], start=1):  # stable ids: links and provisioning refer to them
            panel.id_val = i
        out[name] = json.loads(json.dumps(model, cls=JSONEncoder))
    return out


PROVISIONING = """\
# Grafana provisioning: copy to /etc/grafana/provisioning/dashboards/ctfleet.yaml and the
# dashboards' JSON to the path below (generated by ctfleet/reports/dashboards.py).
apiVersion: 1
providers:
  - name: ctfleet
    orgId: 1
    folder: ctfleet
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: /var/lib/grafana/dashboards/ctfleet
      foldersFromFilesStructure: false
"""

DATASOURCE = """\
# Grafana provisioning: copy to /etc/grafana/provisioning/datasources/ctfleet.yaml and set
# the URL of the Prometheus that scrapes the ctfleet exporters (regional or national).
apiVersion: 1
datasources:
  - name: ctfleet-prometheus
    uid: ctfleet-prometheus
    type: prometheus
    access: proxy
    url: http://127.0.0.1:9090
    isDefault: true
    jsonData:
      timeInterval: 60s
"""


def write(out_dir: Path, regions: dict[str, str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "provisioning").mkdir(exist_ok=True)
    written = []
    for name, doc in build_all(regions).items():
        path = out_dir / name
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    for name, text in (("dashboards.yaml", PROVISIONING), ("datasources.yaml", DATASOURCE)):
        path = out_dir / "provisioning" / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def panel_queries(doc: dict) -> list[dict]:
    """Every query of a dashboard: panel title, refId, expr, instant or range.

    >>> panel_queries({"panels": [{"title": "t", "targets": [{"refId": "A", "expr": "up", "instant": True}]}]})
    [{'panel': 't', 'ref': 'A', 'expr': 'up', 'instant': True}]
    """
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets") or []:
                out.append({"panel": p.get("title", ""), "ref": t.get("refId", ""), "expr": t["expr"], "instant": bool(t.get("instant"))})
            walk(p.get("panels") or [])

    walk(doc.get("panels") or [])
    return out


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's template variables as Grafana would expand them before querying.

    >>> substitute('rate(x{ct="$ct"}[$__rate_interval])', {"ct": "01.511.01.0"})
    'rate(x{ct="01.511.01.0"}[1m])'
    """
    values = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", **variables}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)


def regions_from_project(project) -> dict[str, str]:
    return {r.code: r.name_fr for r in project.national.regions.values()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write the ctfleet Grafana dashboards (JSON) and provisioning files.")
    ap.add_argument("--out", type=Path, default=Path("monitors/dashboards"))
    args = ap.parse_args(argv)
    from ctfleet.project import load_project

    for path in write(args.out, regions_from_project(load_project(with_fleet=False))):
        print(path)


if __name__ == "__main__":  # pragma: no cover
    main()
