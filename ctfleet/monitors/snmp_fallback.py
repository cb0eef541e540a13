"""The poller's fallback: the same poll through pysnmp 7, the reference implementation.

The fast path (:mod:`ctfleet.monitors.snmp_fastpath`) is deliberately narrow and raises
:class:`~ctfleet.monitors.ber.Unsupported` for anything outside the codec (Opaque
values, other security models, an odd discovery answer ...); the device is then polled
again, in full, here, through pysnmp's asyncio hlapi (``get_cmd`` + ``bulk_walk_cmd``,
or ``walk_cmd`` for SNMPv1), under the same deadline. pysnmp is never awaited without
one (pysnmp issue #218: its ``bulk_cmd`` can hang forever when datagrams drop).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ctfleet.monitors.snmp_targets import PollSpec, Target
from ctfleet.monitors.snmp_transport import PollFailure

__all__ = ["poll_with_pysnmp", "from_pysnmp"]


async def poll_with_pysnmp(target: Target, spec: PollSpec, deadline: float, timeout: float, retries: int,
                           max_rows: int) -> tuple:
    """(scalars, table, note) as the fast path returns them, bounded by ``deadline``."""
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData, ContextData, ObjectIdentity, ObjectType, SnmpEngine, UdpTransportTarget,
        UsmUserData, bulk_walk_cmd, get_cmd, usmAesCfb128Protocol, usmHMACSHAAuthProtocol, walk_cmd)

    c = target.creds
    if c.version == "v3":
        auth: Any = UsmUserData(c.user, c.auth_key, c.priv_key, authProtocol=usmHMACSHAAuthProtocol,
                                privProtocol=usmAesCfb128Protocol)
    else:
        auth = CommunityData(c.community, mpModel=0 if c.version == "v1" else 1)
    engine = SnmpEngine()
    scalars: dict = {}
    table: dict = {col: {} for col in spec.columns}
    note = ""
    try:
        async with asyncio.timeout_at(deadline):
            transport = await UdpTransportTarget.create((target.host, target.port), timeout=timeout, retries=retries)
            if spec.get:
                err, status, _idx, binds = await get_cmd(engine, auth, transport, ContextData(),
                                                         *[ObjectType(ObjectIdentity(o)) for o in spec.get])
                _check(err, status)
                for name, value in binds:
                    scalars[tuple(name)] = from_pysnmp(value)
            for col in spec.columns:
                rows = table[col]
                if c.version == "v1":
                    walk = walk_cmd(engine, auth, transport, ContextData(), ObjectType(ObjectIdentity(col)),
                                    lexicographicMode=False)
                else:
                    walk = bulk_walk_cmd(engine, auth, transport, ContextData(), 0, spec.max_repetitions,
                                         ObjectType(ObjectIdentity(col)), lexicographicMode=False)
                async for err, status, _idx, binds in walk:
                    if c.version == "v1" and status and int(status) == 2:
                        break  # noSuchName: v1's end of the MIB view
                    _check(err, status)
                    for name, value in binds:
                        oid = tuple(name)
                        if oid[:len(col)] != col:
                            break
                        rows[oid[len(col)] if len(oid) == len(col) + 1 else oid[len(col):]] = from_pysnmp(value)
                    if len(rows) >= max_rows:
                        note = f"interface table longer than max_rows={max_rows}: walk stopped"
                        break
    except TimeoutError:
        raise PollFailure("timeout", f"pysnmp poll of {target.host}:{target.port} passed the device deadline") from None
    finally:
        try:
            engine.close_dispatcher()
        except Exception:  # noqa: BLE001
            pass
    return scalars, table, note


def _check(err, status) -> None:
    if err:
        text = str(err)
        low = text.lower()
        if "timeout" in low or "no snmp response" in low:
            raise PollFailure("timeout", f"pysnmp: {text}")
        if any(w in low for w in ("digest", "unknown user", "decrypt", "security level", "authoriz")):
            raise PollFailure("auth", f"pysnmp: {text}")
        raise PollFailure("unsupported", f"pysnmp: {text}")
    if status:
        raise PollFailure("unsupported", "pysnmp: agent error-status "
                                         f"{status.prettyPrint() if hasattr(status, 'prettyPrint') else status}")


def from_pysnmp(value) -> Any:
    """A pysnmp value -> the fast path's plain value (int, bytes, OID tuple or None)."""
    name = type(value).__name__
    if name in ("NoSuchObject", "NoSuchInstance", "EndOfMibView", "Null"):
        return None
    if name == "ObjectIdentifier" or name == "ObjectName":
        return tuple(value)
    if hasattr(value, "asOctets"):
        return value.asOctets()
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value).encode()
