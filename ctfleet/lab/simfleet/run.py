"""Start the simulated fleet: snmpsim agents behind the link-emulating relay.

::

    with SimFleet(profiles, workdir, port=16161) as fleet:
        host, port = fleet.endpoint("r-01")          # ("127.20.0.1", 16161)
        creds = fleet.credentials_for("r-01")         # user/keys or community
        ...

How the agents are laid out (see ``_snmpsim`` for why the wrapper is needed):

* one snmpsim SNMP engine per credentials reference (one per region in the generated
  fleet), holding that reference's USM user (HMAC-SHA-96/AES-128, keys from the secret
  seed) and one UDP endpoint per device on a private loopback backend address
  (``127.77.a.b:<free port>``); an engine has its own engine ID, so a region's devices
  share one (per-device engines cost ~0.15 s each to start);
* snmpsim picks a device's data by the endpoint the request came in on (transport ID
  ``1.3.6.1.6.1.1.<N>``, numbered per process in endpoint order): v3 devices'
  data is ``e<k>/1.3.6.1.6.1.1.<N>.snmprec`` (empty context name), v2c devices'
  ``e<k>/<md5(community)>/1.3.6.1.6.1.1.<N>.snmprec`` plus ``e<k>/<community>.snmprec``
  (which is what makes snmpsim accept the community);
* engines are spread over a few snmpsim processes (CPU: pysnmp answers in Python);
* the relay (:mod:`relay`) owns the devices' management addresses and adds latency,
  loss and faults; clients must talk to the relay, never to the backend.

Secrets (USM keys, communities) exist only in ``workdir/secrets`` (0700/0600) and in
the processes' memory; snmpsim runs with ``--log-level=error`` so it does not log them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import os
import random
import shutil
import socket
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ctfleet.lab.simfleet._proc import ManagedProcess, wait_until
from ctfleet.lab.simfleet.data import (
    SYS_NAME,
    DeviceProfile,
    SnmpCredentials,
    build_profiles,
    credentials_json,
    make_credentials,
    manifest,
    write_secret_file,
    write_snmprec,
)
from ctfleet.lab.simfleet.agent_check import ProbeError, snmp_get

DEFAULT_BACKEND_NET = "127.77.0.0/16"
TRANSPORT_DOMAIN = "1.3.6.1.6.1.1"  # snmpUDPDomain; snmpsim appends the endpoint number
_GENERATED = ("snmpsim", "secrets", "logs", "fleet.json", "relay.ready", "relay.stats.json")


class SimFleetError(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoint:
    hostname: str
    host: str  # the device's management address (the relay)
    port: int
    backend: tuple[str, int]  # snmpsim's endpoint behind the relay (do not poll it)
    process: int  # which snmpsim process serves it


def _engine_id(ref: str) -> str:
    """A stable SNMPv3 engine ID per credentials reference (RFC 3411 format 4: text,
    under net-snmp's enterprise number, as a net-snmp agent would build one)."""
    tag = hashlib.sha256(ref.encode()).hexdigest()[:12]
    return "80001f8804" + f"ctfleet-{tag}".encode().hex()


def _backend_address(net: ipaddress.IPv4Network, g: int) -> str:
    a, b = divmod(g, 254)
    addr = net.network_address + (a << 8) + b + 1
    if addr not in net or a > 255:
        raise SimFleetError(f"backend network {net} too small for {g + 1} devices")
    return str(addr)


def _free_udp_port(addresses: Sequence[str], lo: int = 20000, hi: int = 30000, tries: int = 20) -> int:
    """A port free on every address (checked by binding; ephemeral ports are above 32767)."""
    rng = random.Random()
    for _ in range(tries):
        port = rng.randrange(lo, hi)
        socks = []
        try:
            for a in addresses:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((a, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SimFleetError(f"no UDP port free on all {len(addresses)} backend addresses")


def free_port(address: str = "127.0.0.1") -> int:
    """A free UDP port on ``address`` in 20000-30000 (for tests and demos not on 161)."""
    return _free_udp_port([address])


class SimFleet:
    """The simulated fleet as a context manager (or :meth:`start` / :meth:`stop`).

    ``devices``: the profiles to serve (:func:`~ctfleet.lab.simfleet.data.build_profiles`).
    ``port``: the port every management address answers on (161 needs root).
    ``echo_port``: optional UDP echo on every address with the link's latency and loss.
    ``processes``: snmpsim processes (default: up to the CPU count, ~200 devices each).
    ``secret_seed``: bytes for reproducible secrets (tests); default random per run.
    """

    def __init__(self, devices: Iterable[DeviceProfile], workdir: str | os.PathLike, *, port: int = 161,
                 echo_port: int | None = None, processes: int | None = None, secret_seed: bytes | None = None,
                 backend_net: str = DEFAULT_BACKEND_NET, relay_seed: int = 0, ready_timeout_s: float | None = None,
                 python: str = sys.executable):
        self.profiles: dict[str, DeviceProfile] = {}
        for p in devices:
            if p.hostname in self.profiles:
                raise SimFleetError(f"device {p.hostname} given twice")
            self.profiles[p.hostname] = p
        if not self.profiles:
            raise SimFleetError("no devices to simulate")
        self.workdir = Path(workdir).resolve()
        self.port = port
        self.echo_port = echo_port
        self.backend_net = ipaddress.IPv4Network(backend_net)
        if not self.backend_net.is_loopback:
            raise SimFleetError(f"backend network {backend_net} is not on loopback")
        self.relay_seed = relay_seed
        self.python = python
        self.credentials: dict[str, SnmpCredentials] = make_credentials(
            (p.credentials_ref for p in self.profiles.values()), secret_seed)
        n = len(self.profiles)
        self.ready_timeout_s = ready_timeout_s if ready_timeout_s is not None else 60.0 + 0.05 * n
        refs = sorted({p.credentials_ref for p in self.profiles.values()})
        cpu = os.cpu_count() or 1
        self.n_processes = max(1, min(processes or min(cpu, 4, math.ceil(n / 200)), len(refs)))
        self.endpoints: dict[str, Endpoint] = {}
        self._procs: list[ManagedProcess] = []
        self._relay: ManagedProcess | None = None
        self._plan: list[list[str]] = []  # per process: credentials refs (engines)
        self.started = False
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ public API
    def __enter__(self) -> "SimFleet":
        if not self.started:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def endpoint(self, hostname: str) -> tuple[str, int]:
        e = self.endpoints[hostname]
        return e.host, e.port

    def credentials_for(self, hostname: str) -> SnmpCredentials:
        return self.credentials[self.profiles[hostname].credentials_ref]

    def credential_env(self) -> dict[str, str]:
        """``{ENV_NAME: secret_text}`` for the ``env:`` references (to hand to a collector)."""
        return {ref.split(":", 1)[1]: c.secret_text() for ref, c in self.credentials.items() if ref.startswith("env:")}

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs + ([self._relay] if self._relay else []) if p.alive()]

    def relay_stats(self) -> dict:
        try:
            return json.loads((self.workdir / "relay.stats.json").read_text())
        except (OSError, ValueError):
            return {}

    def summary(self) -> str:
        ps = list(self.profiles.values())
        by_fault = defaultdict(int)
        by_link = defaultdict(int)
        for p in ps:
            by_fault[p.fault] += 1
            by_link[p.link.type] += 1
        v2c = sum(p.snmp_version == "v2c" for p in ps)
        addrs = sorted((ipaddress.IPv4Address(p.address) for p in ps))
        lines = [
            f"simulated SNMP fleet: {len(ps)} devices on {addrs[0]} .. {addrs[-1]} port {self.port}"
            + (f" (UDP echo on {self.echo_port})" if self.echo_port else ""),
            f"  SNMP: {len(ps) - v2c} v3 authPriv (SHA/AES-128), {v2c} v2c; {len(self.credentials)} credential sets; "
            f"{self.n_processes} snmpsim process(es), {sum(len(x) for x in self._plan)} engines",
            "  faults: " + ", ".join(f"{k} {v}" for k, v in sorted(by_fault.items())),
            "  links: " + ", ".join(f"{k} {v}" for k, v in sorted(by_link.items())),
            f"  secrets: {self.workdir / 'secrets' / 'credentials.json'} (0600)",
        ]
        if self.timings:
            lines.append("  start: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        return "\n".join(lines)

    # ------------------------------------------------------------------ start/stop
    def start(self) -> "SimFleet":
        if self.started:
            return self
        self.started = True
        t0 = time.monotonic()
        try:
            self._prepare()
            self.timings["generate"] = time.monotonic() - t0
            self._launch()
            self._wait_ready()
            self.timings["total"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        procs, self._procs = self._procs, []
        relay, self._relay = self._relay, None
        for p in ([relay] if relay else []) + procs:
            p.stop()

    # ------------------------------------------------------------------ internals
    def _clean(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in _GENERATED:
            path = self.workdir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def _prepare(self) -> None:
        self._clean()
        secrets = self.workdir / "secrets"
        secrets.mkdir(mode=0o700)
        (self.workdir / "logs").mkdir()
        write_secret_file(secrets / "credentials.json", credentials_json(self.credentials))

        # Engines (credentials references) onto processes, biggest first to the least loaded.
        by_ref: dict[str, list[DeviceProfile]] = defaultdict(list)
        for p in sorted(self.profiles.values(), key=lambda p: p.hostname):
            by_ref[p.credentials_ref].append(p)
        loads = [0] * self.n_processes
        self._plan = [[] for _ in range(self.n_processes)]
        for ref in sorted(by_ref, key=lambda r: (-len(by_ref[r]), r)):
            k = loads.index(min(loads))
            self._plan[k].append(ref)
            loads[k] += len(by_ref[ref])

        ordered = [p for refs in self._plan for ref in refs for p in by_ref[ref]]
        backend_addrs = [_backend_address(self.backend_net, g) for g in range(len(ordered))]
        backend_port = _free_udp_port(backend_addrs)
        g = 0
        for k, refs in enumerate(self._plan):
            root = self.workdir / "snmpsim" / f"p{k}"
            args = []
            n_endpoint = 0
            for j, ref in enumerate(refs):
                creds = self.credentials[ref]
                edir = root / "data" / f"e{j}"
                args += [f"--v3-engine-id={_engine_id(ref)}", f"--data-dir={edir}",
                         f"--v3-user={creds.user}", f"--v3-auth-key={creds.auth_key}", "--v3-auth-proto=SHA",
                         f"--v3-priv-key={creds.priv_key}", "--v3-priv-proto=AES"]
                has_v2c = False
                for p in by_ref[ref]:
                    tid = f"{TRANSPORT_DOMAIN}.{n_endpoint}"
                    if p.snmp_version == "v3":
                        path = edir / f"{tid}.snmprec"
                    else:
                        has_v2c = True
                        path = edir / hashlib.md5(creds.community.encode()).hexdigest() / f"{tid}.snmprec"
                    write_snmprec(p, path)
                    backend = backend_addrs[g]
                    args.append(f"--agent-udpv4-endpoint={backend}:{backend_port}")
                    self.endpoints[p.hostname] = Endpoint(p.hostname, p.address, self.port, (backend, backend_port), k)
                    n_endpoint += 1
                    g += 1
                if has_v2c:  # makes snmpsim accept the community; the relay never lets it answer alone
                    write_snmprec_placeholder(edir / f"{creds.community}.snmprec")
            write_secret_file(secrets / f"snmpsim-p{k}.args", "\n".join(args) + "\n")

        relay_cfg = {
            "port": self.port, "echo_port": self.echo_port, "seed": self.relay_seed,
            "ready_file": str(self.workdir / "relay.ready"), "stats_file": str(self.workdir / "relay.stats.json"),
            "devices": [
                {"address": p.address, "backend": list(self.endpoints[p.hostname].backend),
                 "rtt_ms": p.link.rtt_ms, "jitter_ms": p.link.jitter_ms, "loss": p.link.loss, "fault": p.fault,
                 "slow_delay_s": p.slow_delay_s, "version": p.snmp_version,
                 "community": self.credentials[p.credentials_ref].community if p.snmp_version == "v2c" else None}
                for p in ordered
            ],
        }
        write_secret_file(secrets / "relay.json", json.dumps(relay_cfg))
        (self.workdir / "fleet.json").write_text(json.dumps(
            {"port": self.port, "echo_port": self.echo_port, "devices": manifest(ordered)}, indent=1), encoding="utf-8")

    def _launch(self) -> None:
        t = time.monotonic()
        env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
        for k in range(self.n_processes):
            root = self.workdir / "snmpsim" / f"p{k}"
            argv = [self.python, "-m", "ctfleet.lab.simfleet._snmpsim", f"--cache-dir={root / 'cache'}",
                    "--log-level=error", f"--args-from-file={self.workdir / 'secrets' / f'snmpsim-p{k}.args'}"]
            self._procs.append(ManagedProcess(f"snmpsim-p{k}", argv, self.workdir / "logs" / f"snmpsim-p{k}.log",
                                              env=env, cwd=self.workdir))
        self._relay = ManagedProcess("relay", [self.python, "-m", "ctfleet.lab.simfleet.relay",
                                               str(self.workdir / "secrets" / "relay.json")],
                                     self.workdir / "logs" / "relay.log", cwd=self.workdir)
        self.timings["spawn"] = time.monotonic() - t

    def _check_alive(self) -> None:
        for p in self._procs + ([self._relay] if self._relay else []):
            if not p.alive():
                raise SimFleetError(f"{p.name} exited with {p.proc.returncode}:\n{p.log_tail()}")

    def _wait_ready(self) -> None:
        """Ready = the relay bound every address, and a real SNMP GET of sysName answers
        from every snmpsim process (at its backend) and through the relay."""
        t0 = time.monotonic()
        deadline = t0 + self.ready_timeout_s

        def left() -> float:
            return deadline - time.monotonic()

        ready_file = self.workdir / "relay.ready"

        def relay_ready() -> bool:
            self._check_alive()
            return ready_file.exists()

        if not wait_until(relay_ready, max(0.0, left()), 0.05):
            raise SimFleetError(f"relay not ready after {self.ready_timeout_s:.0f}s:\n{self._relay.log_tail()}")
        self.timings["relay_ready"] = time.monotonic() - t0

        for k in range(self.n_processes):
            p = next(p for p in self.profiles.values() if self.endpoints[p.hostname].process == k)
            self._poll_until(p, direct=True, left=left)
        self.timings["agents_ready"] = time.monotonic() - t0

        live = [p for p in self.profiles.values() if p.answers]
        if live:
            self._poll_until(min(live, key=lambda p: (p.link.rtt_ms, p.link.loss, p.hostname)), direct=False, left=left)
        self.timings["ready"] = time.monotonic() - t0

    def _poll_until(self, p: DeviceProfile, direct: bool, left) -> None:
        e = self.endpoints[p.hostname]
        host, port = e.backend if direct else (e.host, e.port)
        creds = self.credentials[p.credentials_ref]
        last: Exception | None = None
        while left() > 0:
            self._check_alive()
            try:
                value = snmp_get(host, port, p.snmp_version, creds, SYS_NAME,
                                 timeout_s=min(1.0 + 2 * p.link.rtt_ms / 1000, max(0.2, left())))
            except ProbeError as exc:
                last = exc
                time.sleep(0.1)
                continue
            if value != p.hostname:
                raise SimFleetError(f"{p.hostname} at {host}:{port} answered sysName {value!r}")
            return
        raise SimFleetError(f"{p.hostname} at {host}:{port} not answering after {self.ready_timeout_s:.0f}s: {last}\n"
                            + "\n".join(f"--- {x.name}\n{x.log_tail(10)}" for x in self._procs))


def write_snmprec_placeholder(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("1.3.6.1.2.1.1.1.0|4|ctfleet simfleet community placeholder\n", encoding="ascii")


def start_simfleet(project, workdir: str | os.PathLike, port: int = 161, limit: int | None = None,
                   region: str | None = None, **kwargs) -> SimFleet:
    """Start the simulated fleet for the project's registry (its profile's region, or
    ``region``; the first ``limit`` devices in hostname order) and return it running;
    use it as a context manager or call :meth:`SimFleet.stop`."""
    profiles = build_profiles(project.registry, project.profile.fleet.seed, region=region, limit=limit)
    if not profiles:
        raise SimFleetError("no SNMP devices in scope" + (f" (region {region})" if region else ""))
    return SimFleet(profiles, workdir, port=port, **kwargs).start()
