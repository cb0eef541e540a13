"""Which collector shard a CT belongs to: the one sharding rule (pure).

A shard is ``all``, ``region:NN`` (HCP region code) or ``hash:i/n``. A hash shard holds
the CTs whose **CT code** hashes to ``i`` (CRC-32, stable across processes and Python
versions, unlike ``hash()``), so every site and device of a CT lands in the same shard:
the collector's target list (:func:`ctfleet.monitors.snmp_targets.select_targets`) and
its exporter's scope (:func:`ctfleet.monitors.collector.shard_registry`) both ask
:func:`ct_in_shard` and can never split a CT with several sites.

>>> parse_shard("hash:1/4"), shard_label("hash:1/4"), shard_of("01.511.01.0", 4)
(('hash', 1, 4), 'hash-1-of-4', 3)
"""

from __future__ import annotations

import zlib

__all__ = ["parse_shard", "shard_of", "ct_in_shard", "shard_label"]

_VALID = 'valid: "all", "region:NN" (HCP region code) or "hash:i/n" (0 <= i < n)'


def parse_shard(shard: str) -> tuple:
    """``"all"`` -> ("all",); ``"region:NN"`` -> ("region", "NN"); ``"hash:i/n"`` ->
    ("hash", i, n). Raises ValueError naming the valid forms."""
    s = shard.strip()
    if s == "all":
        return ("all",)
    kind, _, rest = s.partition(":")
    if kind == "region" and len(rest) == 2 and rest.isdigit():
        return ("region", rest)
    if kind == "hash":
        i, _, n = rest.partition("/")
        if i.isdigit() and n.isdigit() and 0 <= int(i) < int(n):
            return ("hash", int(i), int(n))
    raise ValueError(f"bad shard {shard!r}; {_VALID}")


def shard_of(ct_code: str, n: int) -> int:
    """The hash shard (of ``n``) of a CT: CRC-32 of its code modulo ``n``."""
    return zlib.crc32(ct_code.encode("utf-8")) % n


def ct_in_shard(ct_code: str, region_code: str, shard: str | tuple) -> bool:
    """True when the CT (by its code and region) belongs to the shard (text or parsed)."""
    spec = parse_shard(shard) if isinstance(shard, str) else shard
    if spec[0] == "all":
        return True
    if spec[0] == "region":
        return region_code == spec[1]
    return shard_of(ct_code, spec[2]) == spec[1]


def shard_label(shard: str) -> str:
    """The shard as a label value and results batch name: all, region-01, hash-1-of-4."""
    p = parse_shard(shard)
    if p[0] == "region":
        return f"region-{p[1]}"
    if p[0] == "hash":
        return f"hash-{p[1]}-of-{p[2]}"
    return "all"
