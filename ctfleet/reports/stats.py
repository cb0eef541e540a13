"""The programme's figures computed from the registry (pure)."""

from __future__ import annotations

from typing import Any

from ctfleet.core.classify import SegmentRules
from ctfleet.core.models import Level, Segment
from ctfleet.core.registry import Registry


def registry_figures(registry: Registry, rules: SegmentRules) -> dict[str, Any]:
    """CTs per segment and lot, beside the programme's published reference figures.

    >>> # {"segments": [{"segment": "region", "label": "Régions", "count": 12, "programme": 12}, ...],
    >>> #  "lots": [{"lot": 1, "from_rules": 192, "with_overrides": 190, "programme": 190}, ...], ...}
    """
    ref = rules.programme_reference
    seg_counts = registry.segment_counts()
    lots_rules = registry.lot_counts(from_rules=True)
    lots_final = registry.lot_counts()
    scoped = len(registry.regions) != 12
    overrides = [
        {"code": ct.code, "name": ct.name_fr, "from_rules": ct.lot_from_rules, "lot": ct.lot, "reason": ct.lot_reason}
        for ct in registry.cts.values() if ct.lot != ct.lot_from_rules
    ]
    return {
        "segments": [
            {"segment": s.value, "label": rules.segments[s].label_fr, "count": seg_counts.get(s, 0),
             "programme": None if scoped else ref.segments.get(s)}
            for s in Segment
        ],
        "total": len(registry.cts),
        "lots": [
            {"lot": n, "from_rules": lots_rules.get(n, 0), "with_overrides": lots_final.get(n, 0),
             "programme": None if scoped else ref.lots.get(n)}
            for n in (1, 2, 3)
        ],
        "levels": {lv.value: sum(1 for c in registry.cts.values() if c.level == lv) for lv in Level},
        "arrondissements": len(registry.arrondissements),
        "seats": {"count": len(registry.seats), "doubtful": sum(1 for s in registry.seats.values() if s.doubtful)},
        "lot_overrides": overrides,
    }
