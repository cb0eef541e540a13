"""The booted test fleet (``scripts/testhosts``) as seen from Python: tests and the benchmark.

:func:`inventory` writes a static YAML inventory for the booted hosts with the same
groups and variables as the ctfleet dynamic inventory (``ct_*``, ``lot_N``,
``segment_*``, ``norms_<segment>_lot<N>`` carrying ``ctfleet_norms``, ``role_*``,
``platform_*``), built with :mod:`ctfleet.ansible_inventory`'s own helpers from a real
CT's resolved norms, so the playbooks meet exactly what production gives them.

:func:`link_profile` says what a commune uplink of each type is in the lab (round trip and
loss from the lab's link model, :data:`ctfleet.lab.simfleet.data.LINK_RTT_MS` and
``LINK_LOSS``; bandwidth the smallest operator offer meeting the CT's LNK-1 norm, as the
fleet generator picks it) and :func:`set_link` puts the booted fleet behind it
(``scripts/testhosts link``: a delaying relay for latency and loss, tc tbf for bandwidth);
:func:`cut` / :func:`restore` take the uplink down and back; :func:`link_stats` reads the
bytes that crossed it, per host.

    >>> link_profile("vsat", min_mbps=2)
    LinkProfile(kind='vsat', rtt_ms=675.0, loss=0.0175, mbit=2.0)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctfleet.ansible_inventory import norm_layers, norm_vars, site_vars
from ctfleet.core.conventions import group_name, norms_group_name
from ctfleet.core.fleet import OFFERS
from ctfleet.core.models import CT, LinkType, Site
from ctfleet.core.norms import NormSet
from ctfleet.lab.simfleet.data import LINK_LOSS, LINK_RTT_MS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "testhosts"


def _run(*args: str, timeout: float = 900, env: dict | None = None) -> str:
    p = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise RuntimeError(f"scripts/testhosts {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    if "WARNING:" in p.stderr:  # e.g. a host booted twice: the run goes on, its log says why
        warnings.warn(f"scripts/testhosts {' '.join(args)}:\n{p.stderr[-6000:]}", RuntimeWarning, stacklevel=3)
    return p.stdout


def build(env: dict | None = None) -> None:
    _run("build", timeout=1800, env=env)


def up(n: int, env: dict | None = None) -> dict[str, Any]:
    out = _run("up", str(n), timeout=1800, env=env)
    return json.loads(out.strip().splitlines()[-1])


def status(env: dict | None = None) -> dict[str, Any]:
    return json.loads(_run("status", env=env).strip().splitlines()[-1])


def kill(host: str, env: dict | None = None) -> None:
    _run("kill", host, env=env)


def start(host: str, env: dict | None = None) -> None:
    _run("start", host, env=env)


def down(env: dict | None = None) -> None:
    _run("down", timeout=300, env=env)


# ---------------------------------------------------------------------- the site's uplink
@dataclass(frozen=True)
class LinkProfile:
    kind: str
    rtt_ms: float
    loss: float  # fraction of segments lost
    mbit: float  # each way


def link_profile(kind: str, *, min_mbps: float) -> LinkProfile:
    """The lab's uplink of type ``kind`` for a CT whose LNK-1 norm is ``min_mbps``.

    Round trip and loss: the middle of the lab's ranges for the type; bandwidth: the
    smallest offer of the type meeting the norm (the largest when none does).
    """
    try:
        link = LinkType(kind)
    except ValueError:
        raise ValueError(f"link type {kind!r}: expected one of {', '.join(t.value for t in LinkType if t != LinkType.NONE)}") from None
    if link == LinkType.NONE:
        raise ValueError("link type 'none' has no uplink to emulate: use cut()")
    offers = OFFERS[link]
    mbit = next((o for o in offers if o >= min_mbps), offers[-1])
    (rtt_lo, rtt_hi), (loss_lo, loss_hi) = LINK_RTT_MS[link.value], LINK_LOSS[link.value]
    return LinkProfile(kind=link.value, rtt_ms=round((rtt_lo + rtt_hi) / 2, 1), loss=round((loss_lo + loss_hi) / 2, 5),
                       mbit=float(mbit))


def set_link(profile: LinkProfile | None, env: dict | None = None) -> None:
    """Put the fleet behind ``profile`` (None: back to a plain LAN). Closes Ansible's SSH masters."""
    if profile is None:
        _run("link", "off", env=env)
    else:
        _run("link", profile.kind, str(profile.rtt_ms), str(profile.loss), str(profile.mbit), env=env)


def cut(env: dict | None = None) -> None:
    _run("cut", env=env)


def restore(env: dict | None = None) -> None:
    _run("restore", env=env)


def link_stats(env: dict | None = None) -> dict[str, dict[str, int]]:
    """Bytes over the uplink per host IP since the relay started: {ip: {"down", "up", "connections"}}."""
    return json.loads(_run("link-stats", env=env).strip().splitlines()[-1]).get("hosts", {})


TCP_IP_HEADERS = 52  # IPv4 20 + TCP 20 + timestamps 12, per packet the SDR cache sends (GSO: per burst)


def sdr_bytes(env: dict | None = None) -> dict[str, int]:
    """What the SDR cache (on the bridge) sent to the site since ``up``, counted on the wire by
    nftables after NAT: {"bytes": IP bytes, "packets", "payload": bytes less TCP/IP headers}."""
    c = json.loads(_run("sdr-bytes", env=env).strip().splitlines()[-1])
    return {**c, "payload": c["bytes"] - TCP_IP_HEADERS * c["packets"]}


class SdrRetransmissions:
    """The TCP retransmissions of the SDR cache's connections to the site while it runs (a context
    manager): the kernel's per-connection ``bytes_retrans`` (``ss -ti``), sampled every
    ``interval`` s, the largest value seen per connection, summed in ``total``. The wire counter
    (:func:`sdr_bytes`) counts a retransmitted segment each time it is sent, the transfer log once:
    a spurious retransmission timeout under CPU load resends what is in flight (hundreds of kB on
    a LAN). A connection's retransmissions in its last ``interval`` before it closes are missed
    (the site cache keeps its connections open ~20 s after its last download).

    ss(8) rather than a packet capture: the counters are the kernel's own, and cost one
    ``ss`` call per sample."""

    def __init__(self, status: dict[str, Any], interval: float = 0.5):
        self.src = status["proxy"].rsplit("/", 1)[-1]  # gateway:port
        self.interval = interval
        self.per_connection: dict[str, int] = {}
        self._stop = None
        self._thread = None

    def sample(self) -> None:
        out = subprocess.run(["ss", "-Htin", "state", "established", "src", self.src], capture_output=True,
                             text=True).stdout
        peer = None
        for line in out.splitlines():
            m = re.match(r"\s*\d+\s+\d+\s+\S+\s+(\S+)", line)
            if m and not line.startswith((" ", "\t")):
                peer = m.group(1)
                self.per_connection.setdefault(peer, 0)
            r = re.search(r"\bbytes_retrans:(\d+)", line)
            if r and peer:
                self.per_connection[peer] = max(self.per_connection.get(peer, 0), int(r.group(1)))

    @property
    def total(self) -> int:
        return sum(self.per_connection.values())

    def __enter__(self) -> "SdrRetransmissions":
        self._stop = threading.Event()

        def loop():
            while not self._stop.wait(self.interval):
                self.sample()

        self._thread = threading.Thread(target=loop, name="sdr-retrans", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def wait_sdr_idle(status: dict[str, Any], timeout: float = 90) -> None:
    """Wait until no connection to the SDR cache is open. apt-cacher-ng writes the transfer log
    line of a connection's last response when the connection ends, and the site cache keeps
    its connection open for a while (about 20 s) after its last download."""
    gw_port = status["proxy"].rsplit("/", 1)[-1]
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["ss", "-Htn", "state", "established", "src", gw_port], capture_output=True, text=True,
                             check=True).stdout
        if not out.strip():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"connections to the SDR cache {gw_port} still open after {timeout:.0f} s:\n{out}")
        time.sleep(1)


# ---------------------------------------------------------------------- the package caches' transfer logs
HEADERS_MAX = 2048  # an HTTP response's headers, generously; a second copy of a package is its whole size again


def acng_log(text: str) -> list[tuple[str, str, int, str]]:
    """apt-cacher-ng's transfer log: (kind I|O, client, bytes, path) per line ``time|kind|bytes|client|path``."""
    out = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) >= 5 and parts[1] in ("I", "O") and parts[2].isdigit():
            out.append((parts[1], parts[3], int(parts[2]), parts[4]))
    return out


def packages_sent(text: str, cache: Path) -> dict[str, tuple[int, int]]:
    """Per package file a cache sent (its transfer log ``text``): (bytes sent, the file's size in ``cache``).

    Counted in bytes, not log lines: a second copy may be partial (a connection closed
    mid-response, then the whole file again on a new one). A file sent twice is more than its
    size + HEADERS_MAX. The log is complete once the site's connections closed (wait_sdr_idle).
    """
    sent: dict[str, int] = {}
    for kind, _, n, path in acng_log(text):
        if kind == "O" and path.endswith(".deb"):
            sent[path] = sent.get(path, 0) + n
    return {p: (n, (cache / p).stat().st_size if (cache / p).is_file() else 0) for p, n in sent.items()}


def sent_twice(per_file: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {p: (n, size) for p, (n, size) in per_file.items() if n > size + HEADERS_MAX}


def inventory(fleet: dict[str, Any], ct: CT, norms: NormSet, roles: dict[str, str], *, extra_vars: dict | None = None,
              site: Site | None = None) -> dict:
    """Inventory (as a dict to dump in YAML/JSON) for the booted hosts of ``fleet``.

    ``roles`` maps host -> "workstation" | "server", or another group name for hosts
    outside the CT ("backup_offsite", "spare"). Everything reaches the hosts the way the
    dynamic inventory says; the test-only facts (addresses, the admin key, the NTP and log
    collector and the SDR package cache on the bridge) go in ``all.vars``. The CT's hosts
    are one site (``site_<ct>_s1``, with ``site``'s link facts when given).

    Backups (SRV-3/SRV-5): the repository password is a ``file:`` reference beside the
    fleet's admin key (outside the project; a test may pass a ``vault:`` one in
    ``extra_vars``). A ``backup_offsite`` host is the region's SFTP host
    (``playbooks/backup_offsite.yml``); without one, SRV-5 is switched off for this fleet
    (the off-site copy is proven by ``tests/test_backups_hosts.py``).
    """
    gw = fleet["gateway"]
    key_pub = Path(fleet["key"] + ".pub").read_text(encoding="utf-8").strip()
    hostvars = {}
    others: dict[str, dict[str, str]] = {}
    for name, h in fleet["hosts"].items():
        role = roles.get(name)
        if role is None:
            continue
        if role not in ("workstation", "server"):  # the region's hosts (backup_offsite), spare hosts: no CT
            others.setdefault(role, {})[name] = h["ip"]
            continue
        hostvars[name] = {"ansible_host": h["ip"], "ctfleet_role": role, "ctfleet_platform": "debian",
                          "ctfleet_os_version": "12", "ctfleet_ct": ct.code, "ctfleet_site": f"{ct.code}-S1"}
    ct_group, shared = group_name("ct", ct.code), norms_group_name(ct, norms.link_of(ct))
    password = Path(fleet["key"]).parent / f"backup-password-{ct.slug}"
    if not password.exists():
        fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
    backup_vars: dict[str, Any] = {"reference_server_backup_password_ref": f"file:{password}"}
    offsite = others.get("backup_offsite", {})
    if offsite:
        name, ip = sorted(offsite.items())[0]
        backup_vars.update(reference_server_backup_offsite_repository=f"sftp:backup_sftp@{ip}:/srv/backups/{ct.code}",
                           reference_server_backup_offsite_host=name)
    else:
        backup_vars["reference_server_srv_5"] = False
    all_vars = {
        "ansible_user": "ctfadmin", "ansible_become": True, "ansible_python_interpreter": "/usr/bin/python3",
        "ctfleet_admins": [{"name": "ctfadmin", "ssh_keys": [key_pub]}],
        "baseline_ntp_servers": [gw], "baseline_log_collector": f"{gw}:514",
        **backup_vars,
        "baseline_package_proxy_sdr": fleet["proxy"],  # the region's (SDR) cache: the proxy on the bridge
        **(extra_vars or {}),
    }
    groups: dict[str, Any] = {
        "all": {"vars": all_vars, "children": {}},
    }
    children = groups["all"]["children"]
    children[group_name("region", ct.region_code)] = {"children": {ct_group: {}}}
    children[ct_group] = {"hosts": {n: hostvars[n] for n in sorted(hostvars)}, "vars": {"ctfleet_segment": ct.segment.value,
                                                                                      "ctfleet_lot": ct.lot}}
    children[group_name("segment", ct.segment.value)] = {"children": {shared: {}}}
    children[f"lot_{ct.lot}"] = {"children": {shared: {}}}
    children[shared] = {"children": {ct_group: {}}, "vars": norm_vars(norms.resolve(ct), norm_layers(norms, ct))}
    for role in ("workstation", "server"):
        children[f"role_{role}"] = {"hosts": {n: {} for n in sorted(hostvars) if hostvars[n]["ctfleet_role"] == role}}
    children["platform_debian"] = {"hosts": {n: {} for n in sorted(hostvars)}}
    for role, hosts in sorted(others.items()):
        children[role] = {"hosts": {n: {"ansible_host": ip} for n, ip in sorted(hosts.items())}}
    # The site: its hosts, and its link facts as the dynamic inventory gives them.
    children[group_name("site", f"{ct.code}-S1")] = {"hosts": {n: {} for n in sorted(hostvars)},
                                                      "vars": site_vars(site) if site is not None else {}}
    return groups


def main(argv: list[str] | None = None) -> int:
    """``python -m ctfleet.lab.testhosts link-profile TYPE``: the figures ``scripts/testhosts link TYPE`` uses
    (for the lab CT's segment, communes under 15,000, where every link type is accepted)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "link-profile":
        print("usage: python -m ctfleet.lab.testhosts link-profile fibre|adsl|4g|vsat", file=sys.stderr)
        return 2
    from ctfleet.core.models import Segment
    from ctfleet.core.norms import load_norms

    norms = load_norms(SCRIPT.parents[1] / "standards")
    min_mbps = float(norms.resolve_for(Segment.COMMUNE_UNDER_15K, 3)["LNK-1"].value)
    try:
        p = link_profile(argv[1], min_mbps=min_mbps)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(p.rtt_ms, p.loss, p.mbit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
