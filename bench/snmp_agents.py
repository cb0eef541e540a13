"""Bench helper: many real net-snmp agents on loopback, for bench_snmp.py.

* one ``snmpd`` process per at most 100 loopback addresses (net-snmp 5.9 cuts its
  ``agentaddress`` list silently after ~2.5 KB), each with ``-f -Lo -C -c CONF -I -smux``
  and its own ``SNMP_PERSISTENT_DIR``; every address answers v2c (a community) and
  SNMPv3 authPriv (an SHA/AES user);
* the agents are the simulated fleet's :class:`~ctfleet.lab.simfleet.snmpd.SnmpdAgent`
  when that module is there (started in parallel here), else a minimal starter below;
* :func:`make_netns` makes a network namespace with a fixed set of 8 links (``lo``, three
  veth pairs, a bridge; this kernel has no ``dummy`` links), so every agent's ifTable has
  the same 8 rows whatever the host has. Loopback is not routed between namespaces, so
  the whole benchmark runs inside it (``ip netns exec``), agents and pollers alike;
* :meth:`AgentFarm.pin` puts the agents on given CPUs (the pollers measured get the other).

Every process started here is stopped by :meth:`AgentFarm.stop` (also on failure), and
:func:`delete_netns` kills what is left in the namespace by pid before deleting it.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MAX_ADDRESSES = 100
SNMPD = "/usr/sbin/snmpd"
# 8 interfaces: lo + 3 veth pairs + 1 bridge (no dummy/vlan links on this kernel)
NETNS_LINKS = (
    ["link", "set", "lo", "up"],
    ["link", "add", "wan0", "type", "veth", "peer", "name", "lan0"],
    ["link", "add", "wan1", "type", "veth", "peer", "name", "lan1"],
    ["link", "add", "wan2", "type", "veth", "peer", "name", "lan2"],
    ["link", "add", "br0", "type", "bridge"],
    ["link", "set", "wan0", "up"], ["link", "set", "lan0", "up"],
    ["link", "set", "wan1", "up"], ["link", "set", "lan1", "up"],
)


@dataclass(frozen=True)
class BenchCreds:
    user: str = "ctfbench"
    auth_key: str = "bench-auth-passphrase"
    priv_key: str = "bench-priv-passphrase"
    community: str = "ctfbench-ro"


def addresses(n: int, net: str = "127.50.0.0/16", skip: int = 0) -> list[str]:
    """``n`` loopback addresses in ``net`` (250 per /24, avoiding .0 and .255)."""
    base = ipaddress.IPv4Network(net).network_address
    out = []
    for i in range(skip, skip + n):
        a, b = divmod(i, 250)
        addr = base + (a << 8) + b + 1
        if addr not in ipaddress.IPv4Network(net):
            raise ValueError(f"{net} too small for {skip + n} addresses")
        out.append(str(addr))
    return out


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def netns_available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def make_netns(name: str) -> None:
    """Create the namespace with its 8 links."""
    _ip("netns", "add", name)
    try:
        for args in NETNS_LINKS:
            _ip("-n", name, *args)
    except BaseException:
        delete_netns(name)
        raise


def netns_pids(name: str) -> list[int]:
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def delete_netns(name: str) -> None:
    """Kill by pid whatever still runs in the namespace (all started by the bench), then
    delete it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = netns_pids(name)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if pids:
            time.sleep(0.5)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


class _MiniAgent:
    """Fallback starter when the simulated fleet's SnmpdAgent is not there."""

    def __init__(self, addrs: list[str], workdir: Path, port: int, creds: BenchCreds):
        self.addresses, self.workdir, self.port, self.creds = addrs, workdir, port, creds
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> "_MiniAgent":
        c = self.creds
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "snmpd.conf"
        conf.write_text(f"agentaddress {','.join(f'udp:{a}:{self.port}' for a in self.addresses)}\n"
                        f'createUser {c.user} SHA "{c.auth_key}" AES "{c.priv_key}"\nrouser {c.user} priv\n'
                        f"rocommunity {c.community} 127.0.0.0/8\nsysName ctfleet-bench\n")
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(self.workdir / "persist"), MIBS="")
        log = (self.workdir / "snmpd.log").open("ab")
        self.proc = subprocess.Popen([SNMPD, "-f", "-Lo", "-C", "-c", str(conf), "-I", "-smux"], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        log.close()
        from ctfleet.monitors.ber import decode_message, encode_get
        req = encode_get(c.community, 0x01000001, [(1, 3, 6, 1, 2, 1, 1, 3, 0)])
        deadline = time.monotonic() + 20
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"snmpd exited: {(self.workdir / 'snmpd.log').read_text()[-1000:]}")
                s.sendto(req, (self.addresses[-1], self.port))
                try:
                    decode_message(s.recvfrom(65535)[0])
                    return self
                except OSError:
                    continue
        self.stop()
        raise RuntimeError("snmpd not answering after 20 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class AgentFarm:
    """``n`` agents (one address each) over ceil(n/100) snmpd processes."""

    def __init__(self, n: int, workdir: Path, port: int = 1161, creds: BenchCreds = BenchCreds(),
                 net: str = "127.50.0.0/16", parallel: int = 8):
        self.addresses = addresses(n, net)
        self.workdir = Path(workdir)
        self.port = port
        self.creds = creds
        self.parallel = parallel
        self.agents: list = []
        self.start_seconds = 0.0
        self._pool: ThreadPoolExecutor | None = None

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(a, self.port) for a in self.addresses]

    def _make(self, k: int, addrs: list[str]):
        wd = self.workdir / f"snmpd-{k:03d}"
        try:
            from ctfleet.lab.simfleet.data import SnmpCredentials
            from ctfleet.lab.simfleet.snmpd import SnmpdAgent
        except ImportError:
            return _MiniAgent(addrs, wd, self.port, self.creds)
        c = self.creds
        return SnmpdAgent(addrs, wd, port=self.port, sys_name="ctfleet-bench",
                          credentials=SnmpCredentials(ref="bench", user=c.user, auth_key=c.auth_key,
                                                      priv_key=c.priv_key, community=c.community),
                          ready_timeout_s=60)

    def start(self) -> "AgentFarm":
        t0 = time.monotonic()
        chunks = [self.addresses[i:i + MAX_ADDRESSES] for i in range(0, len(self.addresses), MAX_ADDRESSES)]
        self.agents = [self._make(k, c) for k, c in enumerate(chunks)]
        # The starting threads must outlive the agents: SnmpdAgent's children get
        # PR_SET_PDEATHSIG, which fires when the *thread* that forked them exits.
        self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="snmpd-start")
        try:
            for f in [self._pool.submit(a.start) for a in self.agents]:
                f.result()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def pin(self, cpus: set[int]) -> None:
        for a in self.agents:
            if a.pid:
                try:
                    os.sched_setaffinity(a.pid, cpus)
                except OSError:
                    pass

    def pids(self) -> list[int]:
        return [a.pid for a in self.agents if a.pid]

    def stop(self) -> None:
        pool = self._pool or ThreadPoolExecutor(self.parallel)
        try:
            list(pool.map(lambda a: a.stop(), self.agents))
        finally:
            pool.shutdown()
            self._pool = None

    def __enter__(self) -> "AgentFarm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
