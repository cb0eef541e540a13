"""The 12 regions as SVG paths, computed in Python from the TopoJSON map (pure).

Why not a JavaScript map library (d3-geo, Leaflet, topojson-client): the KPI report is
one self-contained HTML file that is mailed, archived and printed. Paths computed here
need no script, no tile server and no network, render the same in every browser and on
paper, and can be checked by a test (12 ``<path>`` elements, one per HCP region code).

The map is ``data/regions_topo.json`` (npm ``morocco-map`` 1.3.0, derived from
OpenStreetMap, ODbL: "© OpenStreetMap contributors"; see ``data/PROVENANCE.md``). Its
geometry ids are ISO 3166-2 ``MA-01`` … ``MA-12``, whose number is the HCP region code;
its names are not used (they differ from HCP's: names come from the registry).

Steps: decode the quantised, delta-encoded arcs; project them (spherical Mercator,
fitted to the requested width); simplify each *arc* once (Douglas–Peucker, so shared
borders stay shared and no gap opens between neighbours); stitch rings; format paths
with one decimal.

>>> m = region_map(width=400)
>>> sorted(m.paths)[:2], len(m.paths)
(['01', '02'], 12)
>>> m.paths["01"].startswith("M")
True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

Point = tuple[float, float]


@dataclass(frozen=True)
class RegionMap:
    width: int
    height: int
    paths: dict[str, str]  # HCP region code ("01".."12") -> SVG path data
    label_points: dict[str, Point]  # where to put a region's label (centroid of its largest ring)


def load_topology() -> dict[str, Any]:
    with resources.files("ctfleet.reports").joinpath("data/regions_topo.json").open(encoding="utf-8") as fh:
        return json.load(fh)


def decode_arcs(topo: dict[str, Any]) -> list[list[Point]]:
    """Absolute lon/lat points of every arc (TopoJSON quantisation and delta encoding undone)."""
    t = topo.get("transform")
    out: list[list[Point]] = []
    for arc in topo["arcs"]:
        if t:
            (sx, sy), (tx, ty) = t["scale"], t["translate"]
            x = y = 0
            pts = []
            for dx, dy in arc:
                x += dx
                y += dy
                pts.append((x * sx + tx, y * sy + ty))
        else:
            pts = [(float(a), float(b)) for a, b in arc]
        out.append(pts)
    return out


def mercator(lon: float, lat: float) -> Point:
    return math.radians(lon), math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def simplify(points: list[Point], tolerance: float) -> list[Point]:
    """Douglas–Peucker, iterative; keeps both ends (arcs meet other arcs there)."""
    if len(points) < 3:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    tol2 = tolerance * tolerance
    while stack:
        a, b = stack.pop()
        (ax, ay), (bx, by) = points[a], points[b]
        dx, dy = bx - ax, by - ay
        seg2 = dx * dx + dy * dy
        worst, idx = -1.0, -1
        for i in range(a + 1, b):
            px, py = points[i]
            if seg2 == 0:
                d2 = (px - ax) ** 2 + (py - ay) ** 2
            else:
                u = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / seg2))
                d2 = (px - ax - u * dx) ** 2 + (py - ay - u * dy) ** 2
            if d2 > worst:
                worst, idx = d2, i
        if worst > tol2:
            keep[idx] = True
            stack += [(a, idx), (idx, b)]
    return [p for p, k in zip(points, keep) if k]


def _ring(arc_ids: list[int], arcs: list[list[Point]]) -> list[Point]:
    ring: list[Point] = []
    for i in arc_ids:
        pts = arcs[i] if i >= 0 else arcs[~i][::-1]
        ring.extend(pts if not ring else pts[1:])  # consecutive arcs share their end point
    return ring


def _area_centroid(ring: list[Point]) -> tuple[float, Point]:
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
        c = x0 * y1 - x1 * y0
        a += c
        cx += (x0 + x1) * c
        cy += (y0 + y1) * c
    if a == 0:
        return 0.0, ring[0]
    return abs(a) / 2, (cx / (3 * a), cy / (3 * a))


def _fmt(v: float) -> str:
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


@lru_cache(maxsize=4)
def region_map(width: int = 560, tolerance_px: float = 0.6, padding: int = 8) -> RegionMap:
    """Project and simplify the 12 regions to fit ``width`` pixels (height follows)."""
    topo = load_topology()
    raw = decode_arcs(topo)
    projected = [[mercator(lon, lat) for lon, lat in arc] for arc in raw]
    xs = [x for arc in projected for x, _ in arc]
    ys = [y for arc in projected for _, y in arc]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    k = (width - 2 * padding) / (x1 - x0)
    height = int(math.ceil((y1 - y0) * k + 2 * padding))
    screen = [[((x - x0) * k + padding, (y1 - y) * k + padding) for x, y in arc] for arc in projected]
    arcs = [simplify(arc, tolerance_px) for arc in screen]

    paths: dict[str, str] = {}
    labels: dict[str, Point] = {}
    for geom in topo["objects"]["regions"]["geometries"]:
        code = str(geom["id"]).removeprefix("MA-")
        polygons = geom["arcs"] if geom["type"] == "MultiPolygon" else [geom["arcs"]]
        parts: list[str] = []
        best = (-1.0, (0.0, 0.0))
        for polygon in polygons:
            for r, arc_ids in enumerate(polygon):
                ring = _ring(arc_ids, arcs)
                if len(ring) < 4:
                    continue
                # Drop repeated points left by rounding to one decimal.
                txt, last = [], None
                for x, y in ring[:-1]:
                    p = (_fmt(x), _fmt(y))
                    if p != last:
                        txt.append(f"{p[0]} {p[1]}")
                        last = p
                if len(txt) < 3:
                    continue
                parts.append("M" + "L".join(txt) + "Z")
                if r == 0:
                    area, c = _area_centroid(ring)
                    if area > best[0]:
                        best = (area, c)
        paths[code] = "".join(parts)
        labels[code] = (round(best[1][0], 1), round(best[1][1], 1))
    return RegionMap(width=width, height=height, paths=dict(sorted(paths.items())), label_points=labels)
