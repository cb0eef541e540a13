"""The report as files: one self-contained HTML page, CSV (UTF-8 with BOM) and JSON (pure
rendering, plus the one function that writes them).

The page carries no script and no external resource: styles are inline, the map and
the trend charts are SVG computed here (:mod:`ctfleet.reports.geo`), so it opens
offline, mails as one file and prints (``@media print``). Every KPI figure is also in a
``data-*`` attribute (``data-dim``, ``data-key``, ``data-kpi``, ``data-value``), so a test
or a script can read the page without parsing text.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from ctfleet.reports.geo import region_map
from ctfleet.reports.programme_report.figures import DIMENSIONS, SHARES, Names
from ctfleet.reports.programme_report.i18n import fmt_int, fmt_pct, fmt_points, fmt_time, strings

# ColorBrewer YlGnBu, 5 classes (colour-blind safe, prints in grey as a ramp).
BINS = [(0.0, "#ffffcc"), (0.2, "#a1dab4"), (0.4, "#41b6c4"), (0.6, "#2c7fb8"), (0.8, "#253494")]
NO_DATA = "#d9d9d9"
LOW_COVERAGE = 0.5
LINES = {"connected": "#2c7fb8", "meeting_norms": "#d95f02", "failing": "#b30000", "not_assessed": "#8c8c8c",
         "equipped": "#1b9e77", "hosted": "#66a61e", "coverage": "#7570b3"}
#: The targets table's KPI names (standards/targets.yaml) -> the report's words.
TARGET_LABELS = {"cts_connected": "connected", "cts_meeting_norms": "meeting_norms", "cts_equipped": "equipped",
                 "cts_hosted": "hosted", "mutualisations": "mutualisations"}


def colour(share: float | None) -> str:
    """The map's fill for a meeting-norms share (5 classes of 20 points; grey without data).

    >>> colour(0.0), colour(0.45), colour(1.0), colour(None)
    ('#ffffcc', '#41b6c4', '#253494', '#d9d9d9')
    """
    if share is None:
        return NO_DATA
    fill = BINS[0][1]
    for lower, c in BINS:
        if share >= lower:
            fill = c
    return fill


def _env() -> Environment:
    env = Environment(loader=PackageLoader("ctfleet.reports", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    return env


def _share(n: int, d: int) -> float | None:
    return n / d if d else None


def _delta(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return known[-1] - known[0] if len(known) >= 2 else None


def polyline_segments(values: list[float | None], width: float, height: float, pad: float = 2.0) -> list[str]:
    """SVG ``points`` strings for a 0–1 series over the width; a gap (None) splits the line.

    >>> polyline_segments([0.0, 1.0, None, 0.5], 30, 10, pad=0)
    ['0,10 10,0', '30,5']
    """
    n = len(values)
    segs: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            if segs[-1]:
                segs.append([])
            continue
        x = pad + (width - 2 * pad) * (i / max(n - 1, 1))
        y = pad + (height - 2 * pad) * (1 - max(0.0, min(1.0, v)))
        segs[-1].append(f"{x:.1f}".rstrip("0").rstrip(".") + "," + f"{y:.1f}".rstrip("0").rstrip("."))
    return [" ".join(s) for s in segs if s]


def _name(names: dict[str, tuple[str, str]], code: str, lang: str) -> str:
    pair = names.get(code)
    return (pair[1] if lang == "ar" else pair[0]) if pair else code


def _row_view(r: dict, by: str, names: Names, lang: str, s: dict) -> dict:
    key = r[by] if by != "national" else ""
    if by == "lot":
        label = f"{s['lot']} {key}"
    elif by == "segment":
        label = _name(names.segments, key, lang)
    elif by == "region":
        label = _name(names.regions, key, lang)
    else:
        label = s["national"]
    cells = []
    for kpi in SHARES.values():  # connected, meeting, failing, not assessed, equipped, hosted
        share = _share(r.get(kpi, 0), r["cts"])
        cells.append({"kpi": kpi, "value": r.get(kpi, 0), "text": fmt_int(r.get(kpi, 0), lang), "share": share,
                      "share_text": fmt_pct(share, lang)})
    waived = {"kpi": "cts_with_waivers", "value": r.get("cts_with_waivers", 0), "text": fmt_int(r.get("cts_with_waivers", 0), lang)}
    trend = r.get("trend", {})
    return {
        "dim": by, "key": key, "label": label, "cts": r["cts"], "cts_text": fmt_int(r["cts"], lang), "cells": cells, "waived": waived,
        "coverage": r["coverage"], "coverage_text": fmt_pct(r["coverage"], lang),
        "spark": {name: polyline_segments(trend.get(name, []), 120, 30) for name in ("connected", "meeting_norms")},
        "delta": fmt_points(_delta(trend.get("meeting_norms", [])), lang),
    }


def _ordered(rows: list[dict], by: str, names: Names) -> list[dict]:
    """Segments in the programme's order (regions, councils, then communes by size), others by code."""
    if by != "segment":
        return rows
    order = {k: i for i, k in enumerate(names.segments)}
    return sorted(rows, key=lambda r: (order.get(r["segment"], len(order)), r["segment"]))


def view_model(data: dict, names: Names, lang: str, prometheus_url: str) -> dict:
    s = strings(lang)
    nat = data["national"]
    cards = [{"kpi": "cts", "label": s["cts_long"], "value": nat["cts"], "text": fmt_int(nat["cts"], lang), "share_text": "",
              "spark": [], "colour": "#555"}]
    for name, kpi in SHARES.items():
        share = _share(nat.get(kpi, 0), nat["cts"])
        cards.append({"kpi": kpi, "label": s[name], "value": nat.get(kpi, 0), "text": fmt_int(nat.get(kpi, 0), lang),
                      "share_text": fmt_pct(share, lang), "colour": LINES[name],
                      "spark": polyline_segments(nat["trend"].get(name, []), 160, 36),
                      "delta": fmt_points(_delta(nat["trend"].get(name, [])), lang)})
    cards.append({"kpi": "cts_with_waivers", "label": s["with_waivers"], "value": nat["cts_with_waivers"],
                  "text": fmt_int(nat["cts_with_waivers"], lang), "share_text": "", "spark": [], "colour": "#555"})
    cards.append({"kpi": "coverage", "label": s["coverage"], "value": nat["coverage"], "text": fmt_pct(nat["coverage"], lang),
                  "share_text": "", "colour": LINES["coverage"], "spark": polyline_segments(nat["trend"].get("coverage", []), 160, 36),
                  "delta": fmt_points(_delta(nat["trend"].get("coverage", [])), lang)})

    m = region_map()
    by_region = {r["region"]: r for r in data["region"]}
    regions = []
    for code, d in m.paths.items():
        r = by_region.get(code)
        share = _share(r["cts_meeting_norms"], r["cts"]) if r else None
        cov = r["coverage"] if r else None
        name = _name(names.regions, code, lang)
        tip = (f"{int(code)}. {name} — {s['meeting_norms']} {fmt_pct(share, lang)}, {s['coverage_short']} {fmt_pct(cov, lang)}"
               if r else f"{int(code)}. {name} — {s['map_no_data']}")
        x, y = m.label_points[code]
        regions.append({"code": code, "number": int(code), "d": d, "fill": colour(share), "share": share,
                        "coverage": cov, "low": cov is not None and cov < LOW_COVERAGE, "title": tip, "x": x, "y": y,
                        "name": name, "share_text": fmt_pct(share, lang), "coverage_text": fmt_pct(cov, lang)})
    legend = [{"fill": c, "text": f"{int(lo * 100)}–{int(BINS[i + 1][0] * 100) if i + 1 < len(BINS) else 100} %"}
              for i, (lo, c) in enumerate(BINS)]

    times = data["times"]
    chart = {"w": 720, "h": 200, "lines": [], "x_labels": []}
    for name in ("connected", "meeting_norms", "equipped", "coverage"):
        chart["lines"].append({"name": name, "label": s[name], "colour": LINES[name], "dash": name == "coverage",
                               "segments": polyline_segments(nat["trend"].get(name, []), 720, 200, pad=0)})
    if times:
        for frac in (0.0, 0.5, 1.0):
            t = times[0] + (times[-1] - times[0]) * frac
            chart["x_labels"].append({"x": 720 * frac, "anchor": ("start", "middle", "end")[int(frac * 2)],
                                      "text": fmt_time(t, lang, seconds=data["range_seconds"] < 600).split(" (")[0]})

    tables = []
    for by in DIMENSIONS:
        tables.append({"dim": by, "title": s[f"by_{by}"], "head": s[by],
                       "rows": [_row_view(r, by, names, lang, s) for r in _ordered(data[by], by, names)],
                       "total": _row_view(dict(nat, **{by: ""}), "national", names, lang, s)})

    failing = []
    for f in data["failing"]:
        failing.append({
            "control": f["control"], "title": f["title"], "severity": f["severity"],
            "severity_text": s.get(f"sev_{f['severity']}", f["severity"]), "count": len(f["cts"]),
            "cts": [{"ct": c["ct"], "name": _name(names.cts, c["ct"], lang), "region": _name(names.regions, c["region"], lang),
                     "devices": c["devices"]} for c in f["cts"]]})

    targets = None
    if "targets" in data:
        t = data["targets"]
        targets = {"quarters": t["quarters"], "rows": [
            {"kpi": r["kpi"], "label": s[TARGET_LABELS[r["kpi"]]], "target": r["target"], "target_text": fmt_pct(r["target"], lang),
             "deadline": r["deadline"], "refs": r["refs"], "status": r["status"], "status_text": s[f"status_{r['status']}"],
             "now": r["now"], "now_text": fmt_pct(r["now"], lang, 1),
             "count_text": "" if r["value"] is None else f"{fmt_int(r['value'], lang)} / {fmt_int(r['of'] or 0, lang)}",
             "quarters": [{"quarter": q, "value": v, "text": fmt_pct(v, lang, 1)} for q, v in zip(t["quarters"], r["quarters"])]}
            for r in t["rows"]]}
    waivers = [dict(w, name=_name(names.cts, w["ct"], lang) if w["ct"] in names.cts else "",
                    title=names.controls.get(w["control"], ("", ""))[0]) for w in data.get("waivers", {}).get("in_force", [])]
    return {
        "targets": targets,
        "waivers": waivers, "waivers_expiring": sum(1 for w in waivers if w["expiring"]),
        "lang": lang, "dir": "rtl" if lang == "ar" else "ltr", "s": s,
        "generated": fmt_time(data["at"], lang), "period_from": fmt_time(times[0], lang) if times else "",
        "period_to": fmt_time(data["at"], lang), "range": data["range"], "prometheus": prometheus_url,
        "fleet": names.fleet_label, "cards": cards, "map": {"w": m.width, "h": m.height, "regions": regions},
        "legend": legend, "chart": chart, "tables": tables, "failing": failing,
    }


def render_html(data: dict, names: Names, lang: str = "fr", prometheus_url: str = "") -> str:
    return _env().get_template("report.html.j2").render(**view_model(data, names, lang, prometheus_url))


def render_csv(data: dict, names: Names, lang: str = "fr") -> str:
    """The KPI table (national, then per lot, segment and region), with a UTF-8 BOM so
    Excel opens the Arabic names correctly."""
    s = strings(lang)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    head = [s["csv_dimension"], s["csv_code"], s["csv_name"], s["cts"]]
    for name in SHARES:
        head += [s[name], f"{s[name]} ({s['share']})"]
    head += [s["with_waivers"], s["coverage"], f"{s['meeting_norms']} ({s['change']})"]
    w.writerow(head)
    nat = dict(data["national"], national="")
    for by, rows in [("national", [nat])] + [(by, _ordered(data[by], by, names)) for by in DIMENSIONS]:
        for r in rows:
            v = _row_view(r, by, names, lang, s)
            line = [s[by] if by != "national" else s["national"], v["key"], v["label"], r["cts"]]
            for kpi in SHARES.values():
                share = _share(r.get(kpi, 0), r["cts"])
                line += [r.get(kpi, 0), "" if share is None else f"{share:.4f}"]
            delta = _delta(r.get("trend", {}).get("meeting_norms", []))
            line += [r.get("cts_with_waivers", 0), f"{r['coverage']:.4f}", "" if delta is None else f"{delta:+.4f}"]
            w.writerow(line)
    return "\ufeff" + buf.getvalue()


def render_json(data: dict, names: Names, prometheus_url: str = "") -> str:
    out = json.loads(json.dumps(data))
    out["prometheus"] = prometheus_url
    out["fleet"] = names.fleet_label
    for by, table in (("region", names.regions), ("segment", names.segments)):
        for r in out[by]:
            r["name_fr"], r["name_ar"] = table.get(r[by], (r[by], r[by]))
    for f in out["failing"]:
        for c in f["cts"]:
            c["name_fr"], c["name_ar"] = names.cts.get(c["ct"], (c["ct"], c["ct"]))
    return json.dumps(out, ensure_ascii=False, indent=1)


def write_report(out_dir: Path, data: dict, names: Names, lang: str = "fr", prometheus_url: str = "") -> dict[str, Path]:
    """Write ``report-<lang>.html``, ``kpis-<lang>.csv`` and ``kpis.json``; return their paths."""
    strings(lang)  # fail on a bad language before writing anything
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"html": out_dir / f"report-{lang}.html", "csv": out_dir / f"kpis-{lang}.csv", "json": out_dir / "kpis.json"}
    files["html"].write_text(render_html(data, names, lang, prometheus_url), encoding="utf-8")
    files["csv"].write_text(render_csv(data, names, lang), encoding="utf-8", newline="")
    files["json"].write_text(render_json(data, names, prometheus_url) + "\n", encoding="utf-8")
    return files
