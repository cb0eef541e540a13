"""A UDP relay that gives each simulated device its own address and its link's behaviour.

The kernel here has no ``netem`` (no ``tc qdisc ... netem``, and no dummy links
either), so latency and loss cannot be put on the loopback interface. Instead every
device's management address (e.g. ``127.20.0.7:161``) is a socket of this relay, which
forwards each datagram to the device's snmpsim endpoint and back, holding it for half a
sampled round trip in each direction and dropping it with the link's loss ratio:

* ``dead`` devices: everything is dropped (no agent answers);
* ``slow`` devices: the response is held ``slow_delay_s`` more (past a sane timeout);
* ``truncated`` devices: the response is cut short (a malformed datagram);
* a v3 device ignores v1/v2c requests, a v2c device ignores SNMPv3 and wrong
  communities, as a device with that configuration would (silently; real agents may
  also count the failure or send a trap, which is not simulated).

It is one asyncio process with plain non-blocking sockets (``loop.add_reader``): one
listening socket per device (~1,600 for the national fleet; the file-descriptor limit
is raised to its hard limit at start), and one upstream socket per (device, client
address) "session", NAT-style, so concurrent clients get their own answers without
parsing request ids. Everything is bounded: in-flight datagrams per device and in
total (beyond them, tail drop, counted), sessions (least recently used closed first,
idle ones expire).

Optionally (``echo_port``) each address also answers UDP echo with the same latency and
loss, so a reachability prober can measure satellite round trips on loopback, where
ICMP answers in microseconds.

Run as ``python -m ctfleet.lab.simfleet.relay CONFIG.json``; it writes
``ready_file`` once every socket is bound, the counters to ``stats_file`` every few
seconds and at exit, and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import random
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_DATAGRAM = 65535


@dataclass
class DeviceLink:
    address: str
    backend: tuple[str, int]
    rtt_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0  # round trip
    fault: str = "ok"
    slow_s: float = 0.0
    version: str = "v3"
    community: bytes | None = None  # v2c devices: the only community answered
    pending: int = 0  # datagrams held in timers
    sock: socket.socket | None = None
    echo_sock: socket.socket | None = None

    @property
    def one_way_loss(self) -> float:
        return 1.0 - math.sqrt(max(0.0, 1.0 - self.loss))


@dataclass
class Session:
    device: DeviceLink
    client: tuple[str, int]
    sock: socket.socket
    last: float = field(default_factory=time.monotonic)


def snmp_version(data: bytes) -> int | None:
    """The msgVersion of an SNMP message (0 v1, 1 v2c, 3 v3), None if not one."""
    try:
        if data[0] != 0x30:
            return None
        p = 1
        n = data[p]
        p += 1 + (n & 0x7F if n & 0x80 else 0)
        if data[p] != 0x02 or data[p + 1] != 1:
            return None
        return data[p + 2]
    except IndexError:
        return None


def community(data: bytes) -> bytes | None:
    """The community of a v1/v2c message (short-form lengths, as communities are)."""
    try:
        p = 1
        n = data[p]
        p += 1 + (n & 0x7F if n & 0x80 else 0)
        p += 3  # version INTEGER
        if data[p] != 0x04:
            return None
        n = data[p + 1]
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[p + 2:p + 2 + k], "big")
            p += k
        return bytes(data[p + 2:p + 2 + n])
    except IndexError:
        return None


class Relay:
    def __init__(self, cfg: dict, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.port = int(cfg["port"])
        self.echo_port = cfg.get("echo_port")
        self.max_pending_device = int(cfg.get("max_pending_per_device", 256))
        self.max_pending_total = int(cfg.get("max_pending_total", 65536))
        self.max_sessions = int(cfg.get("max_sessions", 8192))
        self.session_idle_s = float(cfg.get("session_idle_s", 120.0))
        self.rng = random.Random(cfg.get("seed", 0))
        self.devices = [
            DeviceLink(address=d["address"], backend=(d["backend"][0], int(d["backend"][1])),
                       rtt_s=d.get("rtt_ms", 0) / 1000, jitter_s=d.get("jitter_ms", 0) / 1000,
                       loss=d.get("loss", 0.0), fault=d.get("fault", "ok"), slow_s=d.get("slow_delay_s", 0.0),
                       version=d.get("version", "v3"),
                       community=d["community"].encode() if d.get("community") else None)
            for d in cfg["devices"]
        ]
        self.sessions: collections.OrderedDict[tuple[int, tuple[str, int]], Session] = collections.OrderedDict()
        self.by_fd: dict[int, Session] = {}
        self.pending_total = 0
        self.stats = collections.Counter()

    # ------------------------------------------------------------------ set-up
    def bind_all(self) -> None:
        for i, d in enumerate(self.devices):
            d.sock = self._listen(d.address, self.port)
            self.loop.add_reader(d.sock.fileno(), self._on_client, i)
            if self.echo_port:
                d.echo_sock = self._listen(d.address, int(self.echo_port))
                self.loop.add_reader(d.echo_sock.fileno(), self._on_echo, i)

    @staticmethod
    def _listen(address: str, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
            s.bind((address, port))
        except OSError as exc:
            s.close()
            raise OSError(exc.errno, f"cannot bind {address}:{port}: {exc.strerror}") from None
        s.setblocking(False)
        return s

    # ------------------------------------------------------------------ paths
    def _delay(self, d: DeviceLink) -> float:
        """Half of a sampled round trip."""
        if d.rtt_s <= 0:
            return 0.0
        rtt = self.rng.gauss(d.rtt_s, d.jitter_s) if d.jitter_s else d.rtt_s
        return max(rtt, d.rtt_s * 0.5) / 2

    def _hold(self, d: DeviceLink, delay: float, fn, *args) -> None:
        if d.pending >= self.max_pending_device or self.pending_total >= self.max_pending_total:
            self.stats["dropped_queue_full"] += 1
            return
        if delay <= 0:
            fn(*args)
            return
        d.pending += 1
        self.pending_total += 1
        self.loop.call_later(delay, self._release, d, fn, args)

    def _release(self, d: DeviceLink, fn, args) -> None:
        d.pending -= 1
        self.pending_total -= 1
        fn(*args)

    def _on_client(self, i: int) -> None:
        d = self.devices[i]
        for _ in range(64):  # drain what is there, bounded per wake-up
            try:
                data, addr = d.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stats["recv_errors"] += 1
                return
            self.stats["requests"] += 1
            if d.fault == "dead":
                self.stats["dropped_dead"] += 1
                continue
            v = snmp_version(data)
            if (d.version == "v3" and v != 3) or (d.version == "v2c" and (v not in (0, 1) or community(data) != d.community)):
                self.stats["dropped_not_configured"] += 1
                continue
            if d.loss and self.rng.random() < d.one_way_loss:
                self.stats["dropped_loss"] += 1
                continue
            self._hold(d, self._delay(d), self._forward, i, data, addr)

    def _session(self, i: int, addr: tuple[str, int]) -> Session | None:
        key = (i, addr)
        s = self.sessions.get(key)
        if s is not None:
            self.sessions.move_to_end(key)
            s.last = time.monotonic()
            return s
        while len(self.sessions) >= self.max_sessions:
            _, old = self.sessions.popitem(last=False)
            self._close_session(old)
            self.stats["sessions_evicted"] += 1
        d = self.devices[i]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(d.backend)
        except OSError:
            sock.close()
            self.stats["upstream_errors"] += 1
            return None
        s = Session(d, addr, sock)
        self.sessions[key] = s
        self.by_fd[sock.fileno()] = s
        self.loop.add_reader(sock.fileno(), self._on_backend, s)
        self.stats["sessions_opened"] += 1
        return s

    def _close_session(self, s: Session) -> None:
        fd = s.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            self.by_fd.pop(fd, None)
        s.sock.close()

    def _forward(self, i: int, data: bytes, addr: tuple[str, int]) -> None:
        s = self._session(i, addr)
        if s is None or s.sock.fileno() < 0:
            return
        try:
            s.sock.send(data)
            self.stats["forwarded"] += 1
        except OSError:
            self.stats["upstream_errors"] += 1

    def _on_backend(self, s: Session) -> None:
        d = s.device
        for _ in range(64):
            try:
                data = s.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNREFUSED: backend not (yet) listening
                self.stats["upstream_errors"] += 1
                return
            s.last = time.monotonic()
            if d.loss and self.rng.random() < d.one_way_loss:
                self.stats["dropped_loss"] += 1
                continue
            if d.fault == "truncated":
                data = data[: max(1, len(data) // 2)]
            delay = self._delay(d) + (d.slow_s if d.fault == "slow" else 0.0)
            self._hold(d, delay, self._reply, d, data, s.client)

    def _reply(self, d: DeviceLink, data: bytes, client: tuple[str, int]) -> None:
        try:
            d.sock.sendto(data, client)
            self.stats["responses"] += 1
        except OSError:
            self.stats["reply_errors"] += 1

    def _on_echo(self, i: int) -> None:
        d = self.devices[i]
        for _ in range(64):
            try:
                data, addr = d.echo_sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.stats["echo_requests"] += 1
            if d.fault == "dead" or (d.loss and self.rng.random() < d.loss):
                continue
            self._hold(d, 2 * self._delay(d), self._echo_reply, d, data, addr)

    def _echo_reply(self, d: DeviceLink, data: bytes, addr) -> None:
        try:
            d.echo_sock.sendto(data, addr)
        except OSError:
            pass

    # ------------------------------------------------------------------ housekeeping
    def expire_sessions(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self.sessions.items() if now - s.last > self.session_idle_s]:
            self._close_session(self.sessions.pop(key))
            self.stats["sessions_expired"] += 1

    def snapshot(self) -> dict:
        return dict(self.stats) | {"sessions": len(self.sessions), "pending": self.pending_total,
                                   "devices": len(self.devices)}

    def close(self) -> None:
        for s in list(self.sessions.values()):
            self._close_session(s)
        self.sessions.clear()
        for d in self.devices:
            for sock in (d.sock, d.echo_sock):
                if sock is not None and sock.fileno() >= 0:
                    self.loop.remove_reader(sock.fileno())
                    sock.close()


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise OSError(f"need {needed} file descriptors, the hard limit is {hard}")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


async def serve(cfg: dict) -> None:
    loop = asyncio.get_running_loop()
    relay = Relay(cfg, loop)
    n = len(relay.devices)
    raise_fd_limit(n * (2 if relay.echo_port else 1) + relay.max_sessions + 64)
    relay.bind_all()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stats_file = Path(cfg["stats_file"]) if cfg.get("stats_file") else None
    if cfg.get("ready_file"):
        _write_atomic(Path(cfg["ready_file"]), json.dumps({"pid": os.getpid(), "devices": n}))
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=float(cfg.get("stats_interval_s", 2.0)))
            except asyncio.TimeoutError:
                pass
            relay.expire_sessions()
            if stats_file:
                _write_atomic(stats_file, json.dumps(relay.snapshot()))
    finally:
        if stats_file:
            _write_atomic(stats_file, json.dumps(relay.snapshot()))
        relay.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ctfleet.lab.simfleet.relay CONFIG.json", file=sys.stderr)
        return 2
    cfg = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        asyncio.run(serve(cfg))
    except OSError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
