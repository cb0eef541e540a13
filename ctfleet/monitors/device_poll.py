"""Walked columns -> :class:`~ctfleet.monitors.sweep.DevicePoll` (pure, but stateful
across sweeps for 32-bit counter wraps).

Per interface (row of ifTable/ifXTable, by ifIndex; non-contiguous indexes are kept as
they are):

* name: ifName, else ifDescr; speed: ifHighSpeed (Mbit/s), else ifSpeed / 10^6.
* octets: ifHCInOctets/ifHCOutOctets (64-bit) where the row has them, else
  ifInOctets/ifOutOctets (32-bit) **per interface** (a Cisco router may have 64-bit
  counters on one interface of 28; Windows, old switches and UPSes have none).
  ``Interface.counter_bits`` says which (64, 32, or 0 when the row has neither).
* 32-bit wraps: :class:`CounterWraps` remembers each 32-bit counter's last raw value;
  a raw value lower than the last one, while sysUpTime went on increasing, is a wrap,
  and 2^32 is added from then on, so the exported counter keeps increasing as a
  Prometheus counter must. A sysUpTime that went back (reboot) resets that device's
  offsets: the counter really restarted. A counter that wraps more than once between
  two polls (above ~570 Mbit/s at a 60 s interval) cannot be told apart from one wrap:
  that is why 64-bit counters are preferred wherever a row has them.
* strings through :func:`~ctfleet.monitors.sweep.clean_text` (no control characters,
  invalid UTF-8 read as Latin-1), so every label value the exporter makes parses.
"""

from __future__ import annotations

from ctfleet.monitors.snmp_targets import (
    IF_ADMIN_STATUS,
    IF_ALIAS,
    IF_DESCR,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_HIGH_SPEED,
    IF_IN_OCTETS,
    IF_NAME,
    IF_OPER_STATUS,
    IF_OUT_OCTETS,
    IF_SPEED,
    SYS_DESCR,
    SYS_NAME,
    SYS_UPTIME,
)
from ctfleet.monitors.sweep import DevicePoll, Interface, choose_uplink, clean_text

__all__ = ["CounterWraps", "build_poll", "WRAP32"]

WRAP32 = 1 << 32
_NO_ROWS: dict = {}
_NAME_COLUMNS = (IF_NAME, IF_DESCR, IF_ALIAS)
_new_object = object.__new__
_set_attr = object.__setattr__


class CounterWraps:
    """Offsets of 32-bit counters per device and interface, across sweeps."""

    def __init__(self) -> None:
        # device key -> (last sysUpTime, {ifIndex: [raw_in, offset_in, raw_out, offset_out]})
        self._state: dict[tuple, tuple] = {}

    def extend(self, device: tuple, uptime: int | None, rows: dict) -> dict:
        """``rows[ifIndex] = (raw_in, raw_out)`` (32-bit) -> ``{ifIndex: (in, out)}``
        with wraps added. Keeps the state for the next sweep."""
        prev_uptime, prev = self._state.get(device, (None, {}))
        rebooted = uptime is not None and prev_uptime is not None and uptime < prev_uptime
        state: dict = {}
        out = {}
        for idx, (raw_in, raw_out) in rows.items():
            last = None if rebooted else prev.get(idx)
            if last is None:
                s = [raw_in, 0, raw_out, 0]
            else:
                s = [raw_in, last[1] + (WRAP32 if raw_in < last[0] else 0),
                     raw_out, last[3] + (WRAP32 if raw_out < last[2] else 0)]
            state[idx] = s
            out[idx] = (raw_in + s[1], raw_out + s[3])
        if len(self._state) > 200_000:
            self._state.clear()
        if state:
            self._state[device] = (uptime, state)
        else:
            self._state.pop(device, None)
        return out


def _interface(index: int, name: str, admin_up: bool, oper_up: bool, speed_mbps: int, in_octets: int,
               out_octets: int, alias: str, counter_bits: int, descr: str) -> Interface:
    """``Interface(...)`` without the frozen dataclass's ``object.__setattr__`` per
    field: the same object (fields, eq, hash), built in one step. This is the hottest
    allocation of a sweep (one per row of every device)."""
    i = _new_object(Interface)
    _set_attr(i, "__dict__", {"index": index, "name": name, "admin_up": admin_up, "oper_up": oper_up,
                              "speed_mbps": speed_mbps, "in_octets": in_octets, "out_octets": out_octets,
                              "alias": alias, "counter_bits": counter_bits, "descr": descr})
    return i


def _int(v) -> int | None:
    return v if v.__class__ is int else None


def build_poll(hostname: str, version: str, scalars: dict, table: dict, note: str, elapsed: float,
               uplink: str | None = None, wraps: CounterWraps | None = None, device: tuple = ()) -> DevicePoll:
    """A DevicePoll from the walked columns (``table[column][ifIndex] = value``; rows
    whose index is not a single sub-identifier are ignored). ``uplink`` is the site's
    declared uplink interface; ``wraps``/``device`` keep 32-bit counters increasing."""
    get = table.get
    descrs, admins, opers = get(IF_DESCR, _NO_ROWS), get(IF_ADMIN_STATUS, _NO_ROWS), get(IF_OPER_STATUS, _NO_ROWS)
    names, ins, outs = get(IF_NAME, _NO_ROWS), get(IF_HC_IN_OCTETS, _NO_ROWS), get(IF_HC_OUT_OCTETS, _NO_ROWS)
    speeds, aliases = get(IF_HIGH_SPEED, _NO_ROWS), get(IF_ALIAS, _NO_ROWS)
    ins32, outs32, speeds32 = get(IF_IN_OCTETS, _NO_ROWS), get(IF_OUT_OCTETS, _NO_ROWS), get(IF_SPEED, _NO_ROWS)
    indexes: set = set()
    for values in table.values():
        indexes.update(values)
    uptime = scalars.get(SYS_UPTIME)
    uptime = uptime if isinstance(uptime, int) else None
    rows = sorted(k for k in indexes if k.__class__ is int)
    # 32-bit counters only for the rows without 64-bit ones (per interface)
    narrow = {}
    for idx in rows:
        if _int(ins.get(idx)) is None and _int(outs.get(idx)) is None:
            i32, o32 = _int(ins32.get(idx)), _int(outs32.get(idx))
            if i32 is not None or o32 is not None:
                narrow[idx] = (i32 or 0, o32 or 0)
    if narrow and wraps is not None:
        narrow = wraps.extend(device or (hostname,), uptime, narrow)
    interfaces = []
    append = interfaces.append
    for idx in rows:
        name = names.get(idx)
        descr = descrs.get(idx)
        alias = aliases.get(idx)
        speed = speeds.get(idx)
        if speed.__class__ is not int:
            s32 = speeds32.get(idx)
            speed = s32 // 1_000_000 if s32.__class__ is int else 0
        hin, hout = ins.get(idx), outs.get(idx)
        if hin.__class__ is int or hout.__class__ is int:
            bits = 64
            hin = hin if hin.__class__ is int else 0
            hout = hout if hout.__class__ is int else 0
        elif idx in narrow:
            bits = 32
            hin, hout = narrow[idx]
        else:
            bits, hin, hout = 0, 0, 0
        descr_text = "" if descr is None else clean_text(descr)
        append(_interface(
            idx,
            clean_text(name) if name else descr_text,
            admins.get(idx) == 1,
            opers.get(idx) == 1,
            speed,
            hin,
            hout,
            "" if alias is None else clean_text(alias),
            bits,
            descr_text if name else ""))
    ifs = tuple(interfaces)
    if any(c in table for c in _NAME_COLUMNS) or uplink:
        uplink_index, reason = choose_uplink(ifs, uplink)
    else:
        uplink_index, reason = None, "interface names not polled"
    return DevicePoll(
        hostname, ok=True, version=version,  # type: ignore[arg-type]
        sys_name=clean_text(scalars.get(SYS_NAME)), sys_descr=clean_text(scalars.get(SYS_DESCR)),
        uptime_seconds=uptime / 100.0 if uptime is not None else None,
        interfaces=ifs, uplink_index=uplink_index, uplink_reason=reason, detail=note, elapsed_seconds=elapsed)
