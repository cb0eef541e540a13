"""The poller on recordings of real devices (the public ``snmpsim-data`` package), served
by snmpsim, compared field by field with what net-snmp's ``snmpget``/``snmpbulkwalk``
read from the same agent.

18 recordings of different vendors and kinds: Cisco IOS (64-bit counters on one
interface of 28) and Catalyst, Juniper MX960, Huawei S5720 (CR LF in sysDescr) and
S12704, H3C Comware with 1,317 interfaces, Ruijie N18010 and Topsec NGFW (no 64-bit
counters, non-contiguous ifIndex), Palo Alto PA-5000 (ifIndex up to 400000004),
Brocade, ZTE, D-Link, Aruba, NetApp, Linux (one with a non-UTF-8 sysDescr), Windows
Server 2003 and an APC UPS. Each recording is cut to the subtrees the collector polls
(system, interfaces, ifMIB) plus the first record after them, so snmpsim indexes 3 MB
instead of 154 MB; the records kept are the recorded lines, unchanged.

In CI (CI=true) a missing snmpsim, snmpsim-data or net-snmp client is a failure.
"""

from __future__ import annotations

import bz2
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ctfleet.lab.procs.service import Service
from ctfleet.monitors.poller import (
    IF_ADMIN_STATUS,
    IF_ALIAS,
    IF_COLUMNS,
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
    Poller,
    SnmpCreds,
    Target,
    run,
)
from ctfleet.monitors.ber import oid_to_str
from ctfleet.monitors.sweep import clean_text

RECORDINGS = [
    "network/router/cisco-unmarked-0", "network/switch/cisco-c3750", "network/router/juniper-mx960-12-3r6-6",
    "network/router/huawei-s5720", "network/switch/h3c-comware-lsq1wcmd0-2509p61", "network/router/ruijie-n18010",
    "network/firewall/paloalto-pa-5000", "network/firewall/topsec-ngfw4000-uf", "network/router/brocade-unknown-001",
    "os/linux/unknown-006", "os/windows/server-2003-5-2", "network/switch/zte-zrx10", "network/switch/dlink-des3200",
    "network/wifi/aruba-7210", "os/linux/netmanage", "network/switch/huawei-s12704", "storage/netapp-fas3270",
    "UPS/apc-8932",
]
HOST = "127.31.5.1"
_KEEP = re.compile(r"^1\.3\.6\.1\.2\.1\.(1|2|31)\.")


def _need(what: str, why: str):
    msg = f"{what} not available: {why}"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def _recordings_dir() -> Path:
    try:
        import snmpsim_data
    except ImportError:
        _need("snmpsim-data", "pip install the test extras (snmpsim-data)")
    return Path(snmpsim_data.__file__).parent / "data"


def _cut(src: Path, dst: Path) -> None:
    """The recorded lines of the polled subtrees, and the first line after each of them
    (what a walk that leaves the subtree meets)."""
    opener = bz2.open if src.suffix == ".bz2" else open
    out, after = [], False
    with opener(src, "rt", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            if _KEEP.match(line):
                out.append(line)
                after = True
            elif after:
                out.append(line)
                after = False
    dst.write_text("".join(out), encoding="utf-8", errors="surrogateescape")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    data = _recordings_dir()
    for tool in ("snmpget", "snmpbulkwalk"):
        if shutil.which(tool) is None:
            _need(tool, "install the Debian package snmp")
    responder = Path(sys.executable).with_name("snmpsim-command-responder")
    if not responder.exists():
        _need("snmpsim-command-responder", "pip install the test extras (snmpsim)")
    work = tmp_path_factory.mktemp("recordings")
    (work / "data").mkdir()
    for rec in RECORDINGS:
        src = data / f"{rec}.snmprec.bz2"
        _cut(src if src.exists() else data / f"{rec}.snmprec", work / "data" / f"{Path(rec).name}.snmprec")
    from test_poller import free_udp_port

    port = free_udp_port(HOST)
    svc = Service("snmpsim", [str(responder), f"--data-dir={work / 'data'}", f"--cache-dir={work / 'cache'}",
                              f"--agent-udpv4-endpoint={HOST}:{port}", "--log-level=error"],
                  work / "snmpsim.log", env=dict(os.environ, SNMPSIM_ALLOW_ROOT="true"))

    def ready() -> bool:
        r = subprocess.run(["snmpget", "-v2c", "-c", "apc-8932", "-t", "0.5", "-r", "0", f"{HOST}:{port}",
                            "1.3.6.1.2.1.1.5.0"], capture_output=True, text=True, env=_env())
        return r.returncode == 0
    svc.start(ready, timeout=120)
    try:
        yield HOST, port
    finally:
        svc.stop()


def _env() -> dict:
    return dict(os.environ, MIBS="", MIBDIRS="/nonexistent")


_LINE = re.compile(r"^\.(\d+(?:\.\d+)*) = (.*)$")


def _netsnmp(tool: str, community: str, endpoint: tuple, *oids: str) -> dict:
    """``{oid tuple: int | bytes}`` as net-snmp read it (-On numeric OIDs, -Ox strings in
    hex, -Oe numeric enums, -Ot raw timeticks)."""
    argv = [tool, "-v2c", "-c", community, "-On", "-Ox", "-Oe", "-Ot", "-t", "5", "-r", "2"]
    if tool == "snmpbulkwalk":
        argv += ["-Cr25"]
    r = subprocess.run(argv + [f"{endpoint[0]}:{endpoint[1]}", *oids], capture_output=True, text=True,
                       env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    out: dict = {}
    key, parts = None, []

    def flush():
        if key is None:
            return
        text = " ".join(parts).strip()
        kind, _, value = text.partition(": ")
        if "No Such" in text or "No more variables" in text:
            return
        if kind == "Hex-STRING":
            out[key] = bytes.fromhex(value.replace(" ", ""))
        elif kind in ("STRING",) or text == '""':
            out[key] = value.strip('"').encode() if kind == "STRING" else b""
        elif kind in ("INTEGER", "Counter32", "Counter64", "Gauge32"):
            out[key] = int(value.split()[0])
        elif kind == text and text.isdigit():  # -Ot timeticks: the bare number
            out[key] = int(text)
        else:
            out[key] = text
    for line in r.stdout.splitlines():
        m = _LINE.match(line)
        if m:
            flush()
            key, parts = tuple(int(x) for x in m.group(1).split(".")), [m.group(2)]
        else:
            parts.append(line)
    flush()
    return out


def _expected(community: str, endpoint: tuple) -> dict:
    """What the poll must contain, built from net-snmp's reads of the same agent."""
    scalars = _netsnmp("snmpget", community, endpoint, *(oid_to_str(o) for o in (SYS_NAME, SYS_DESCR, SYS_UPTIME)))
    with ThreadPoolExecutor(4) as pool:
        walks = dict(zip(IF_COLUMNS, pool.map(lambda c: _netsnmp("snmpbulkwalk", community, endpoint, oid_to_str(c)),
                                              IF_COLUMNS)))
    cols = {c: {oid[len(c)]: v for oid, v in w.items() if oid[:len(c)] == c and len(oid) == len(c) + 1}
            for c, w in walks.items()}
    indexes = sorted({i for rows in cols.values() for i in rows})
    ifs = []
    for i in indexes:
        name, descr = cols[IF_NAME].get(i), cols[IF_DESCR].get(i)
        hin, hout = cols[IF_HC_IN_OCTETS].get(i), cols[IF_HC_OUT_OCTETS].get(i)
        if hin is not None or hout is not None:
            octets = (64, hin or 0, hout or 0)
        elif cols[IF_IN_OCTETS].get(i) is not None or cols[IF_OUT_OCTETS].get(i) is not None:
            octets = (32, cols[IF_IN_OCTETS].get(i) or 0, cols[IF_OUT_OCTETS].get(i) or 0)
        else:
            octets = (0, 0, 0)
        speed = cols[IF_HIGH_SPEED].get(i)
        if speed is None:
            s32 = cols[IF_SPEED].get(i)
            speed = s32 // 1_000_000 if isinstance(s32, int) else 0
        ifs.append({"index": i, "name": clean_text(name) if name else clean_text(descr), "speed_mbps": speed,
                    "admin_up": cols[IF_ADMIN_STATUS].get(i) == 1, "oper_up": cols[IF_OPER_STATUS].get(i) == 1,
                    "counter_bits": octets[0], "in_octets": octets[1], "out_octets": octets[2],
                    "alias": clean_text(cols[IF_ALIAS].get(i))})
    uptime = scalars.get(SYS_UPTIME)
    return {"sys_name": clean_text(scalars.get(SYS_NAME)), "sys_descr": clean_text(scalars.get(SYS_DESCR)),
            "uptime_seconds": uptime / 100 if isinstance(uptime, int) else None, "interfaces": ifs,
            "raw_descr": scalars.get(SYS_DESCR)}


@pytest.fixture(scope="module")
def polls(agent):
    host, port = agent
    targets = [Target(Path(r).name, host, SnmpCreds("v2c", community=Path(r).name), port) for r in RECORDINGS]

    async def go():
        async with Poller(timeout=5.0, retries=1, concurrency=4) as p:
            return await p.sweep(targets, interval=400.0)
    return run(go())  # on uvloop, as the collector runs the poller


@pytest.mark.component
@pytest.mark.parametrize("recording", RECORDINGS, ids=[Path(r).name for r in RECORDINGS])
def test_poll_matches_net_snmp_field_by_field(agent, polls, recording):
    name = Path(recording).name
    poll = polls[name]
    assert poll.ok, (poll.error, poll.detail)
    want = _expected(name, agent)
    assert (poll.sys_name, poll.sys_descr) == (want["sys_name"], want["sys_descr"])
    # snmpsim serves its own, moving sysUpTime for some recordings: equal within the test's run time
    assert (poll.uptime_seconds is None) == (want["uptime_seconds"] is None)
    if want["uptime_seconds"] is not None:
        assert abs(poll.uptime_seconds - want["uptime_seconds"]) < 300
    got = [{k: getattr(i, k) for k in want["interfaces"][0]} for i in poll.interfaces] if want["interfaces"] else []
    assert [g["index"] for g in got] == [w["index"] for w in want["interfaces"]]
    for g, w in zip(got, want["interfaces"]):
        assert g == w, name
    assert poll.uplink_reason  # chosen or not, the reason is there


def test_the_corpus_has_what_the_issue_names(polls):
    h3c = polls["h3c-comware-lsq1wcmd0-2509p61"]
    assert len(h3c.interfaces) == 1317
    palo = [i.index for i in polls["paloalto-pa-5000"].interfaces]
    assert palo != list(range(1, len(palo) + 1)) and max(palo) == 400000004  # non-contiguous ifIndex
    cisco = polls["cisco-unmarked-0"].interfaces
    assert len(cisco) == 28 and sorted(i.counter_bits for i in cisco) == [32] * 27 + [64]
    for no_hc in ("ruijie-n18010", "topsec-ngfw4000-uf", "server-2003-5-2", "apc-8932"):
        ifs = polls[no_hc].interfaces
        assert ifs and all(i.counter_bits == 32 for i in ifs), no_hc
        assert any(i.in_octets for i in ifs), no_hc  # the traffic is there, not 0 for ever
    assert "\r" not in polls["huawei-s5720"].sys_descr and "S5720-36C-EI-AC Huawei" in polls["huawei-s5720"].sys_descr
    assert "\ufffd" not in polls["netmanage"].sys_descr
    assert len({p.sys_descr.split()[0] for p in polls.values() if p.sys_descr}) >= 12  # vendors and kinds
