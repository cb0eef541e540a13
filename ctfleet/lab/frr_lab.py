"""Router labs for the tests and the technician's walk-through: real FRRouting behind a
real sshd in private namespaces, and fake-switches' Cisco IOS on loopback.

FRR lab (root only; Debian packages frr and openssh-server)::

    with FrrLab(workdir, ["r-lab-1", "r-lab-2"]) as lab:
        r = lab.routers[0]
        r.address      # 169.254.X.2: sshd inside the router's namespace, session = vtysh
        r.vtysh("show running-config")   # straight into the namespace, bypassing SSH

Each router is ``unshare --net --mount --pid --fork``: its own network stack (a veth
pair with a private link-local /30 to this host; traffic never leaves the machine), its
own ``/etc/frr`` (a bind mount, so ``write memory`` never touches the machine's file),
a tmpfs on ``/run`` (sshd's and FRR's sockets, the guard's state) and on
``/var/log/frr``, private ``/etc/passwd`` and ``/etc/shadow`` with the lab's login
account, and a PID namespace: killing its first process ends every process inside
(zebra, staticd, sshd, sessions, a pending revert timer), also when a test fails.
``ctfleet-guard`` (the on-router revert timer) is installed as on a real FRR host.

fake-switches (PyPI ``fake-switches``, installed ``--no-deps`` with a current
``twisted[conch]``): :class:`FakeIos` runs its ``cisco_generic`` model on 127.0.0.1 with
the launcher fixed for Python 3 (the enable password is compared as text).

Run the FRR lab for the README walk-through::

    python -m ctfleet.lab.frr_lab frr --dir /tmp/rtr-lab --routers 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ctfleet.lab.procs.service import Service, ServiceError, free_port, require

HOST_DIR = Path(__file__).resolve().parent.parent / "routers" / "host"  # the product's on-router scripts
LOGIN_USER = "netops"

# A starting configuration that misses most of the router norms, as a site's router would.
FRR_START = """frr defaults traditional
log stdout informational
service integrated-vtysh-config
!
ip route 192.0.2.0/24 blackhole
!
line vty
exit
!
"""

_SSHD_CONFIG = """Port 22
ListenAddress 0.0.0.0
HostKey {dir}/ssh/host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication no
AuthorizedKeysFile none
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
LoginGraceTime 20
MaxStartups 100
MaxSessions 20
ClientAliveInterval 5
ClientAliveCountMax 3
ForceCommand {session}
"""

# A router whose SSH session answers with something netmiko does not expect.
_EXPIRED_SESSION = """#!/bin/sh
printf 'WARNING: Your password has expired.\\nYou must change your password now and login again!\\nCurrent password: '
read -r _ || true
exit 1
"""

_INIT = """set -eu
W='{dir}'
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd /run/frr /run/ctfleet-guard
chown frr:frr /run/frr
mount -t tmpfs -o mode=755 tmpfs /var/log/frr
mount --bind "$W/etc-frr" /etc/frr
mount --bind "$W/passwd" /etc/passwd
mount --bind "$W/shadow" /etc/shadow
ip link set lo up
/usr/lib/frr/zebra -A 127.0.0.1 -u frr -g frr --log "file:$W/log/zebra.log" &
# staticd only retries zebra every few seconds: start it once zebra listens.
i=0
while [ ! -S /run/frr/zserv.api ] || [ ! -S /run/frr/zebra.vty ]; do
  i=$((i+1)); [ $i -lt 200 ] || {{ echo "zebra did not start" >&2; exit 1; }}; sleep 0.05
done
/usr/lib/frr/staticd -A 127.0.0.1 -u frr -g frr --log "file:$W/log/staticd.log" &
i=0
while [ ! -S /run/frr/staticd.vty ]; do
  i=$((i+1)); [ $i -lt 200 ] || {{ echo "staticd did not start" >&2; exit 1; }}; sleep 0.05
done
vtysh -b > "$W/log/vtysh-boot.log" 2>&1 || {{ echo "vtysh -b failed" >&2; cat "$W/log/vtysh-boot.log" >&2; exit 1; }}
/usr/sbin/sshd -D -e -f "$W/sshd_config" 2>> "$W/log/sshd.log" &
touch "$W/ready"
wait
"""


class LabError(ServiceError):
    pass


def require_frr_lab() -> None:
    """Everything the FRR lab needs, or a clear error naming what to install (never a skip)."""
    if os.geteuid() != 0:
        raise LabError("the FRR lab needs root (network, mount and PID namespaces)")
    for binary, package in (("unshare", "util-linux"), ("nsenter", "util-linux"), ("ip", "iproute2"),
                            ("sshd", "openssh-server"), ("ssh-keygen", "openssh-client"), ("vtysh", "frr"),
                            ("openssl", "openssl")):
        require(binary, package)
    for path, package in (("/usr/lib/frr/zebra", "frr"), ("/usr/lib/frr/staticd", "frr"),
                          ("/usr/lib/frr/frr-reload.py", "frr-pythontools")):
        if not os.path.exists(path):
            raise LabError(f"{path} not found: install the Debian package {package}")


def _run(*argv: str, input: str | None = None, timeout: float = 30) -> str:
    r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise LabError(f"{' '.join(argv[:4])}... failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def _pick_subnet() -> int:
    """A free 169.254.X.0/24 for this lab (link-local: never routed off the machine)."""
    used = _run("ip", "-4", "-o", "addr", "show")
    for _ in range(200):
        x = random.randint(100, 249)
        if f" 169.254.{x}." not in used:
            return x
    raise LabError("no free 169.254.X.0/24 for the lab")


@dataclass
class LabRouter:
    name: str
    address: str  # inside the namespace, where sshd listens
    host_address: str  # this host's end of the veth pair: where the controller's packets come from
    dir: Path
    veth: str
    proc: subprocess.Popen | None = None
    pid: int | None = None  # the namespace's first process, as this host sees it
    session: str = "vtysh"

    def vtysh(self, *commands: str, timeout: float = 30) -> str:
        """Run vtysh commands inside the router's namespace (not over SSH): the test's own eyes."""
        argv = ["nsenter", "-t", str(self.pid), "-n", "-m", "vtysh"]
        for c in commands:
            argv += ["-c", c]
        return _run(*argv, timeout=timeout)

    def guard(self, *args: str) -> str:
        return _run("nsenter", "-t", str(self.pid), "-n", "-m", "-p", str(self.dir / "bin" / "ctfleet-guard"), *args)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class FrrLab:
    """N FRR routers, each in its own namespaces behind its own sshd (see the module docstring)."""

    workdir: Path
    names: list[str]
    password: str = field(default_factory=lambda: "lab-" + secrets.token_urlsafe(12))
    sessions: dict[str, str] = field(default_factory=dict)  # name -> "vtysh" | "expired-password"
    routers: list[LabRouter] = field(default_factory=list)

    @property
    def username(self) -> str:
        return LOGIN_USER

    def login_secret(self) -> str:
        """The value to put behind the routers' login reference (see ctfleet.routers.settings)."""
        return json.dumps({"username": LOGIN_USER, "password": self.password})

    def start(self, timeout: float = 30.0) -> "FrrLab":
        require_frr_lab()
        self.workdir.mkdir(parents=True, exist_ok=True)
        subnet = _pick_subnet()
        tag = secrets.token_hex(2)
        passwd, shadow = self._accounts()
        try:
            for i, name in enumerate(self.names):
                d = self.workdir / name
                r = LabRouter(name, f"169.254.{subnet}.{4 * i + 2}", f"169.254.{subnet}.{4 * i + 1}", d,
                              f"ctfl{tag}{i}", session=self.sessions.get(name, "vtysh"))
                self._prepare(r, passwd, shadow)
                self.routers.append(r)
                self._launch(r)
            deadline = time.monotonic() + timeout
            for r in self.routers:
                self._wait_ready(r, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _accounts(self) -> tuple[str, str]:
        hashed = _run("openssl", "passwd", "-6", "-stdin", input=self.password + "\n").strip()
        passwd = Path("/etc/passwd").read_text()
        shadow = Path("/etc/shadow").read_text()
        passwd += f"{LOGIN_USER}:x:0:0:ctfleet lab operator:/root:/bin/sh\n"
        shadow += f"{LOGIN_USER}:{hashed}:19000:0:99999:7:::\n"
        return passwd, shadow

    def _prepare(self, r: LabRouter, passwd: str, shadow: str) -> None:
        if r.dir.exists():
            shutil.rmtree(r.dir)
        for sub in ("etc-frr", "log", "ssh", "bin"):
            (r.dir / sub).mkdir(parents=True)
        etc = r.dir / "etc-frr"
        (etc / "daemons").write_text("zebra=yes\nstaticd=yes\nvtysh_enable=yes\n")
        (etc / "vtysh.conf").write_text("service integrated-vtysh-config\n")
        (etc / "frr.conf").write_text(FRR_START)
        shutil.chown(etc, "frr", "frr")
        for f in etc.iterdir():
            shutil.chown(f, "frr", "frr")
            f.chmod(0o640)
        (r.dir / "passwd").write_text(passwd)
        (r.dir / "shadow").write_text(shadow)
        (r.dir / "shadow").chmod(0o600)
        for script in ("ctfleet-guard", "ctfleet-frr-session"):
            shutil.copy(HOST_DIR / script, r.dir / "bin" / script)
            (r.dir / "bin" / script).chmod(0o755)
        session = r.dir / "bin" / "ctfleet-frr-session"
        if r.session == "expired-password":
            session = r.dir / "bin" / "expired-password"
            session.write_text(_EXPIRED_SESSION)
            session.chmod(0o755)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(r.dir / "ssh" / "host_ed25519_key"))
        (r.dir / "sshd_config").write_text(_SSHD_CONFIG.format(dir=r.dir, session=session))
        (r.dir / "init.sh").write_text(_INIT.format(dir=r.dir))

    def _launch(self, r: LabRouter) -> None:
        log = (r.dir / "log" / "init.log").open("ab")
        r.proc = subprocess.Popen(["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
                                   "--propagation", "private", "--kill-child", "sh", str(r.dir / "init.sh")],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        r.pid = self._child_of(r.proc.pid)
        _run("ip", "link", "add", r.veth, "type", "veth", "peer", "name", "mgmt0", "netns", str(r.pid))
        _run("ip", "addr", "add", f"{r.host_address}/30", "dev", r.veth)
        _run("ip", "link", "set", r.veth, "up")
        ns = ["nsenter", "-t", str(r.pid), "-n"]
        _run(*ns, "ip", "addr", "add", f"{r.address}/30", "dev", "mgmt0")
        _run(*ns, "ip", "link", "set", "mgmt0", "up")

    @staticmethod
    def _child_of(pid: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except FileNotFoundError:
                raise LabError("unshare exited while starting the lab router") from None
            if kids:
                return int(kids[0])
            time.sleep(0.01)
        raise LabError("unshare did not start its child")

    def _wait_ready(self, r: LabRouter, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not r.alive():
                raise LabError(f"lab router {r.name} exited while starting:\n{_tail(r.dir / 'log' / 'init.log')}")
            if (r.dir / "ready").exists():
                try:
                    with socket.create_connection((r.address, 22), timeout=1) as s:
                        if s.recv(64).startswith(b"SSH-"):
                            return
                except OSError:
                    pass
            time.sleep(0.05)
        raise LabError(f"lab router {r.name} not ready in time:\n{_tail(r.dir / 'log' / 'init.log')}\n{_tail(r.dir / 'log' / 'sshd.log')}")

    def stop(self) -> None:
        """Kill every router namespace (its first process takes all the others with it) and the veths."""
        for r in self.routers:
            for pid in (r.pid, r.proc.pid if r.proc else None):
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if r.proc is not None:
                try:
                    r.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            subprocess.run(["ip", "link", "del", r.veth], capture_output=True)  # usually gone with the namespace

    def __enter__(self) -> "FrrLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------- fake-switches (Cisco IOS)
def require_fake_switches() -> None:
    try:
        import fake_switches  # noqa: F401
        import twisted.conch  # noqa: F401
    except ImportError as exc:
        raise LabError(f"fake-switches is not installed ({exc.name}): pip install --no-deps fake-switches "
                       "and pip install 'twisted[conch]' tftpy netaddr lxml") from None


class FakeIos(Service):
    """fake-switches' Cisco IOS (``cisco_generic``) over SSH on 127.0.0.1.

    The password reaches the child through its environment, never its command line."""

    def __init__(self, workdir: Path, hostname: str, username: str, password: str, port: int | None = None):
        require_fake_switches()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        env = dict(os.environ, CTFLEET_FAKE_IOS_PASSWORD=password)
        argv = [sys.executable, "-m", "ctfleet.lab.frr_lab", "fake-ios", "--hostname", hostname,
                "--username", username, "--port", str(self.port)]
        super().__init__(f"fake-ios {hostname}", argv, workdir / f"fake-ios-{hostname}.log", env=env)

    def start(self, timeout: float = 30.0) -> "FakeIos":  # type: ignore[override]
        def ready() -> bool:
            with socket.create_connection((self.host, self.port), timeout=1) as s:
                return s.recv(64).startswith(b"SSH-")

        super().start(ready, timeout)
        return self


def _serve_fake_ios(hostname: str, username: str, port: int) -> None:
    import logging

    from fake_switches import switch_factory
    from fake_switches.transports.ssh_service import SwitchSshService
    from twisted.internet import reactor

    logging.basicConfig(level="WARNING")
    password = os.environ["CTFLEET_FAKE_IOS_PASSWORD"]
    # Upstream's launcher passes bytes to the switch core, which compares them with the
    # text typed after "enable": pass text there, bytes to the SSH checker.
    core = switch_factory.SwitchFactory().get("cisco_generic", hostname, password)
    SwitchSshService(ip="127.0.0.1", port=port, switch_core=core,
                     users={username: password.encode()}).hook_to_reactor(reactor)
    reactor.run()


# ---------------------------------------------------------------- the walk-through lab
def _lab_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctfleet.lab.frr_lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("frr", help="run N FRR routers for the walk-through until Ctrl-C")
    f.add_argument("--dir", required=True, type=Path)
    f.add_argument("--routers", type=int, default=2)
    f.add_argument("--cts", nargs="*", help="HCP codes of the CTs the routers stand for (default: the first communes)")
    fi = sub.add_parser("fake-ios", help=argparse.SUPPRESS)
    fi.add_argument("--hostname", required=True)
    fi.add_argument("--username", required=True)
    fi.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "fake-ios":
        _serve_fake_ios(args.hostname, args.username, args.port)
        return 0
    from ctfleet.project import load_project
    from ctfleet.lab.router_fleet import write_lab_project

    project = load_project(with_fleet=False)
    cts = args.cts or [c.code for c in project.registry.cts.values() if c.level.value == "commune"][: args.routers]
    names = [f"r-{c.replace('.', '-')}" for c in cts]
    lab = FrrLab(args.dir / "routers", names)
    lab.start()
    try:
        env = write_lab_project(args.dir, project, lab, cts)
        print(f"{len(lab.routers)} FRR routers up. In another shell:\n  . {env}\n"
              "  ctfleet routers backup && ctfleet routers audit\nCtrl-C stops the lab.", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        lab.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if len(sys.argv) > 1 and sys.argv[1] == "frr" else None
    sys.exit(_lab_main())
