"""A real SNMP GET through pysnmp (the project's reference implementation), used to
decide that simulated agents are ready. Runs its own event loop in a helper thread, so
it works from synchronous code and from inside a caller's running event loop alike."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from ctfleet.lab.simfleet.data import SnmpCredentials


class ProbeError(Exception):
    pass


async def snmp_get_async(host: str, port: int, version: str, creds: SnmpCredentials, oid: str,
                         timeout_s: float = 1.0, retries: int = 0) -> str:
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        UsmUserData,
        get_cmd,
        usmAesCfb128Protocol,
        usmHMACSHAAuthProtocol,
    )

    if version == "v3":
        auth: Any = UsmUserData(creds.user, creds.auth_key, creds.priv_key,
                                authProtocol=usmHMACSHAAuthProtocol, privProtocol=usmAesCfb128Protocol)
    else:
        auth = CommunityData(creds.community, mpModel=1)
    engine = SnmpEngine()
    try:
        target = await UdpTransportTarget.create((host, port), timeout=timeout_s, retries=retries)
        err, status, _, binds = await get_cmd(engine, auth, target, ContextData(), ObjectType(ObjectIdentity(oid)))
    finally:
        engine.close_dispatcher()
    if err:
        raise ProbeError(f"{host}:{port}: {err}")
    if status:
        raise ProbeError(f"{host}:{port}: {status.prettyPrint()}")
    return str(binds[0][1])


def enter_netns(name: str) -> None:
    """Move the calling *thread* into network namespace ``name`` (``ip netns`` names)."""
    import ctypes

    clone_newnet = 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, clone_newnet) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def snmp_get(host: str, port: int, version: str, creds: SnmpCredentials, oid: str,
             timeout_s: float = 1.0, retries: int = 0, netns: str | None = None) -> str:
    """Blocking GET of one OID; raises :class:`ProbeError` on timeout or error. With
    ``netns``, the GET is sent from inside that network namespace (a helper thread)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            if netns:
                enter_netns(netns)
            box["value"] = asyncio.run(snmp_get_async(host, port, version, creds, oid, timeout_s, retries))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="simfleet-probe", daemon=True)
    t.start()
    t.join(timeout_s * (retries + 1) + 10)
    if "error" in box:
        err = box["error"]
        raise err if isinstance(err, ProbeError) else ProbeError(f"{host}:{port}: {err!r}")
    if "value" not in box:
        raise ProbeError(f"{host}:{port}: probe did not finish")
    return box["value"]
