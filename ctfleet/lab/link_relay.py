"""The delaying TCP relay of the booted test fleet's emulated commune uplink (stdlib only).

``scripts/testhosts link TYPE`` puts it in the path of every TCP connection that crosses
the site's uplink, transparently (nftables ``redirect`` to this relay, which finds the real
destination with ``SO_ORIGINAL_DST`` and connects onward):

* region -> site: this machine (the technician's controller) to a host's SSH port;
* site -> region: a host to a service on the bridge gateway (the SDR's package cache, the
  git mirror, the results service). Host-to-host traffic (the commune's LAN, e.g. the
  workstations fetching from the reference server's cache) never crosses it.

What it emulates, per direction (why a relay: ``netem`` is not built into these kernels;
``tbf``, which is, sets the bandwidth, see ``scripts/testhosts``):

* latency: each chunk read on one side is written on the other RTT/2 later, in order; a new
  connection costs one RTT before its first byte (the TCP handshake);
* loss: each 1448-byte segment of a chunk is lost with the link's probability; a chunk
  with a lost segment arrives one retransmission later (max(RTT, 200 ms), Linux's minimum
  RTO), which is what loss costs a TCP stream; a lost SYN costs the initial 1 s RTO;
* a cut link: not here — ``scripts/testhosts cut`` rejects the traffic in nftables, so
  the relay's onward connections fail as a real router without its uplink makes them fail.

It counts the bytes it carries per site host and direction: that is what crossed the
uplink. Control (a Unix socket, one JSON line per request)::

    {"cmd": "set", "name": "vsat", "rtt_ms": 675, "loss": 0.0175}  -> {"ok": true}
    {"cmd": "stats"}  -> {"ok": true, "name": "vsat", "hosts": {"10.250.77.11": {"down": 123, "up": 45, "connections": 2}}}
    {"cmd": "reset"}  -> {"ok": true}

    python3 ctfleet/lab/link_relay.py serve --listen 127.0.0.1:40077 --listen 10.250.77.1:40077 \\
        --gateway 10.250.77.1 --mark 0x43544c --control /run/ctfleet-testhosts/link.sock
    python3 ctfleet/lab/link_relay.py ctl /run/ctfleet-testhosts/link.sock '{"cmd": "stats"}'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import socket
import struct
import sys

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
SEGMENT = 1448  # TCP payload of a 1500-byte MTU frame with timestamps
MIN_RTO_S = 0.2
SYN_RTO_S = 1.0
CONNECT_TIMEOUT_S = 15.0  # below Ansible's connect timeout, so a dead link reads as unreachable
CHUNK = 65536
QUEUE_CHUNKS = 64  # per direction: bounds the relay's memory, as a TCP window bounds a link's


class Link:
    def __init__(self, seed: int = 1) -> None:
        self.name = "lan"
        self.rtt_s = 0.0
        self.loss = 0.0
        self.rng = random.Random(seed)
        self.hosts: dict[str, dict[str, int]] = {}

    def one_way(self, nbytes: int) -> float:
        delay = self.rtt_s / 2
        if self.loss > 0 and nbytes > 0:
            segments = max(1, math.ceil(nbytes / SEGMENT))
            if any(self.rng.random() < self.loss for _ in range(segments)):
                delay += max(self.rtt_s, MIN_RTO_S)
        return delay

    def handshake(self) -> float:
        return self.rtt_s + (SYN_RTO_S if self.loss > 0 and self.rng.random() < self.loss else 0.0)

    def count(self, host: str, direction: str, n: int) -> None:
        h = self.hosts.setdefault(host, {"down": 0, "up": 0, "connections": 0})
        h[direction] += n


def original_dst(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, addr = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(addr), port


async def pump(link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, direction: str) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_CHUNKS)

    async def read() -> None:
        while True:
            try:
                data = await reader.read(CHUNK)
            except (ConnectionError, OSError):
                data = b""
            await queue.put((loop.time() + link.one_way(len(data)), data))
            if not data:
                return

    async def write() -> None:
        last = 0.0
        while True:
            at, data = await queue.get()
            at = max(at, last)  # a stream stays in order: a late chunk holds back the next ones
            last = at
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                try:
                    if writer.can_write_eof():
                        writer.write_eof()
                except (ConnectionError, OSError):
                    pass
                return
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                return
            link.count(host, direction, len(data))

    await asyncio.gather(read(), write())


async def handle(link: Link, gateway: str, mark: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    peer = writer.get_extra_info("peername")[0]
    try:
        dst_host, dst_port = original_dst(sock)
    except OSError:
        writer.close()
        return
    # The site host is whichever end is not the region (this machine / the gateway).
    site_host = peer if peer not in ("127.0.0.1", gateway) else dst_host
    down, up = ("down", "up") if site_host == dst_host else ("up", "down")
    link.count(site_host, "connections", 1)
    await asyncio.sleep(link.handshake())
    out = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    out.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)  # skip the redirect on the way on
    out.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(out, (dst_host, dst_port)), CONNECT_TIMEOUT_S)
        o_reader, o_writer = await asyncio.open_connection(sock=out)
    except (OSError, asyncio.TimeoutError):
        out.close()
        writer.close()
        return
    try:
        await asyncio.gather(pump(link, reader, o_writer, site_host, down), pump(link, o_reader, writer, site_host, up))
    finally:
        for w in (writer, o_writer):
            try:
                w.close()
            except (ConnectionError, OSError):
                pass


async def control(link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        req = json.loads((await reader.readline()).decode() or "{}")
        cmd = req.get("cmd")
        if cmd == "set":
            link.name = str(req["name"])
            link.rtt_s = float(req["rtt_ms"]) / 1000
            link.loss = float(req["loss"])
            reply = {"ok": True}
        elif cmd == "stats":
            reply = {"ok": True, "name": link.name, "rtt_ms": link.rtt_s * 1000, "loss": link.loss, "hosts": link.hosts}
        elif cmd == "reset":
            link.hosts = {}
            reply = {"ok": True}
        else:
            reply = {"ok": False, "error": f"unknown cmd {cmd!r}: expected set, stats or reset"}
    except (ValueError, KeyError, TypeError) as e:
        reply = {"ok": False, "error": f"bad request: {e}"}
    writer.write((json.dumps(reply) + "\n").encode())
    await writer.drain()
    writer.close()


async def serve(args: argparse.Namespace) -> None:
    link = Link()
    servers = []
    for spec in args.listen:
        host, port = spec.rsplit(":", 1)
        servers.append(await asyncio.start_server(lambda r, w: handle(link, args.gateway, args.mark, r, w), host, int(port),
                                                  reuse_address=True))
    servers.append(await asyncio.start_unix_server(lambda r, w: control(link, r, w), path=args.control))
    print("relay ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def ctl(path: str, request: str) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(request.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="delaying TCP relay of the test fleet's emulated uplink")
    sub = ap.add_subparsers(dest="action", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", action="append", required=True, help="ADDR:PORT (repeatable)")
    s.add_argument("--gateway", required=True, help="the region side's address on the bridge")
    s.add_argument("--mark", type=lambda v: int(v, 0), required=True, help="fwmark of the relay's own onward connections")
    s.add_argument("--control", required=True, help="Unix socket for set/stats/reset")
    c = sub.add_parser("ctl")
    c.add_argument("socket")
    c.add_argument("request")
    args = ap.parse_args(argv)
    if args.action == "serve":
        asyncio.run(serve(args))
        return 0
    reply = ctl(args.socket, args.request)
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
