"""The images the stacks deploy exist, build here from Debian, and serve.

``infra/images/build`` makes a Debian 12 base with debootstrap (cached as a tarball in
/var/cache/ctfleet, imported with ``podman import``), then each image with
``buildah bud --isolation chroot --runtime runc --layers``: nothing is pulled from a
registry, and RUN layers are reused between builds (a code change rebuilds only the last
layers). The images then run as the stacks run them (uid/gid 65532, read-only root
filesystem, all capabilities dropped, no privilege escalation), with the config files
the regional plan puts in their ConfigMaps:

- the collector, on a network of its own (``--network none``: it polls nobody), serves
  /metrics on the container's loopback with the region's CTs (its fleet ConfigMap mounted;
  results in a local directory instead of the region's PostgreSQL, which it cannot reach);
- apt-cacher-ng, on loopback, answers and caches a package from a mirror served on loopback.

The build runs once per module (first build here: ~5 min for the base, ~2 min per
image; later ones reuse the layers). In CI a missing podman/buildah/runc is a failure.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from ctfleet.stacks.generate import read_stack_file
from ctfleet.stacks.plan import yaml_text
from ctfleet.stacks.program import STACKS_DIR, load_inputs, plan_for

pytestmark = [pytest.mark.component, pytest.mark.slow]

BUILD = ROOT / "infra" / "images" / "build"
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
RUN = [*PODMAN, "run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
# as the stacks' Deployments run them (ctfleet/stacks/manifests.py, securityContext)
AS_THE_POD = ["--user", "65532:65532", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
OURS = "registry.ctfleet.ma/ctfleet/"
# Images the stacks take from their upstream projects, pinned by tag (not built here).
UPSTREAM = ("quay.io/prometheus/", "docker.io/library/postgres:", "docker.io/grafana/grafana:")
STACK = "sdr-oriental"


def _versions() -> dict[str, str]:
    """The tags infra/images/build gives each image (its VERSION table)."""
    text = BUILD.read_text()
    table = re.search(r"declare -A VERSION=\(([^)]*)\)", text).group(1)
    return dict(re.findall(r"\[([a-z-]+)\]=([0-9A-Za-z.+-]+)", table))


@pytest.fixture(scope="module")
def images():
    """Build every image once for the module (the base is shared; layers are cached)."""
    missing = [c for c in ("podman", "buildah", "runc", "debootstrap") if shutil.which(c) is None]
    assert not missing, f"missing {missing}: apt-get install podman buildah runc debootstrap (scripts/apt-packages.txt)"
    started = time.monotonic()
    proc = subprocess.run([str(BUILD), "all"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    took = time.monotonic() - started
    print(f"\nimages built in {took:.0f} s")
    return {name: f"localhost/ctfleet/{name}:{tag}" for name, tag in _versions().items()}


@pytest.fixture(scope="module")
def regional_plan():
    inputs = load_inputs()
    raw = read_stack_file(ROOT / STACKS_DIR / f"Pulumi.{STACK}.yaml")[0]
    return plan_for(inputs, STACK, raw)


def yaml_load(text: str):
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def _app(plan, name):
    return next(a for a in plan.apps if a.name == name)


def _owned_dir(path: Path) -> Path:
    """A directory the pod's user owns (an emptyDir / a volume with fsGroup 65532)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 65532, 65532)
    return path


def _write(directory: Path, files: dict[str, str]) -> Path:
    """A ConfigMap's data as the files of a directory the pod's user can read."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
        os.chmod(directory / name, 0o644)
    os.chmod(directory, 0o755)
    return directory


def _free_port() -> int:
    """A free loopback port below 32768: apt-cacher-ng 3.7.4 fails to bind higher ones
    ("Error resolving address for binding"), which the kernel's ephemeral range hands out."""
    import random

    for port in random.sample(range(20000, 32000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-32000")


class _Container:
    def __init__(self, name: str):
        self.name = name

    def logs(self) -> str:
        r = subprocess.run([*PODMAN, "logs", self.name], capture_output=True, text=True)
        return r.stdout + r.stderr  # the container's stdout and stderr, as podman replays them

    def exec(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([*PODMAN, "exec", self.name, *argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def container(request):
    """Start a detached container (``start(args)``) and always remove it."""
    started: list[str] = []

    def start(args: list[str]) -> _Container:
        name = f"ctfleet-test-{request.node.name[:30].replace('_', '-')}-{os.getpid()}"
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True)
        proc = subprocess.run([*RUN, "-d", "--name", name, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        started.append(name)
        return _Container(name)

    yield start
    for name in started:
        subprocess.run([*PODMAN, "rm", "-f", "-t", "2", name], capture_output=True, timeout=60)


# ------------------------------------------------------------------ every deployed image has a build
def test_every_image_the_stacks_deploy_has_a_build_file(regional_plan):
    inputs = load_inputs()
    versions = _versions()
    deployed = set()
    for name in inputs.stacks:
        raw = read_stack_file(ROOT / STACKS_DIR / f"Pulumi.{name}.yaml")[0]
        deployed |= {a.image for a in plan_for(inputs, name, raw).apps}
    ours = sorted(i for i in deployed if i.startswith(OURS))
    assert ours, "the stacks deploy no image of ours?"
    for ref in ours:
        name, tag = ref.removeprefix(OURS).split(":", 1)
        assert (ROOT / "infra" / "images" / name / "Containerfile").is_file(), f"{ref}: no infra/images/{name}/Containerfile"
        assert versions.get(name) == tag, f"{ref}: infra/images/build tags {name} {versions.get(name)}, the stack names {tag}"
    assert all(i.startswith(OURS) or i.startswith(UPSTREAM) for i in deployed), sorted(deployed)
    for containerfile in (ROOT / "infra" / "images").glob("*/Containerfile"):
        # built from the local Debian base only: never FROM a registry
        froms = re.findall(r"^FROM\s+(\S+)", containerfile.read_text(), re.M)
        assert froms == ["${BASE}"], (containerfile, froms)


# ------------------------------------------------------------------ the collector
def test_collector_image_serves_the_region(images, regional_plan, container, tmp_path):
    coll = _app(regional_plan, "collector")
    # The stack's ConfigMaps, with one change: results go to a local directory, not the region's
    # PostgreSQL (unreachable from --network none; tests/test_datapath_e2e.py runs that path).
    config = yaml_load(coll.config["collector.yaml"])
    assert config["results_dir"].startswith("postgresql")
    config["results_dir"] = "/var/lib/ctfleet/results"
    mounts = ["-v", f"{_write(tmp_path / 'config', {'collector.yaml': yaml_text(config)})}:{coll.config_mount}:ro"]
    for fs in coll.files:
        mounts += ["-v", f"{_write(tmp_path / fs.name, fs.data)}:{fs.mount}:ro"]
    c = container([
        "--network", "none", *AS_THE_POD, "--tmpfs", "/tmp",
        "-v", f"{_owned_dir(tmp_path / 'state')}:/var/lib/ctfleet", *mounts,
        images["collector"], *coll.args,
    ])
    probe = ("import urllib.request,sys; "
             "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9160/metrics', timeout=5).read().decode())")
    text, deadline = "", time.monotonic() + 90
    while time.monotonic() < deadline:
        r = c.exec("python", "-c", probe)
        if r.returncode == 0:
            text = r.stdout
            break
        time.sleep(1)
    assert text, f"/metrics never answered on the container's loopback; logs:\n{c.logs()}"
    regions = set(re.findall(r'^ctfleet_ct_info\{[^}]*region="(\d+)"', text, re.M))
    assert regions == {"02"}, regions  # shard region:02: the Oriental's CTs, no other region's
    assert "shard region:02" in c.logs()
    # the results service runs from the same image: its module and dependencies import
    r = subprocess.run([*RUN, "--rm", "--network", "none", *AS_THE_POD, "--entrypoint", "python", images["collector"],
                        "-c", "import ctfleet.results.service, uvicorn, psycopg, alembic, sqlalchemy; print('ok')"],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "ok", r.stderr


# ------------------------------------------------------------------ the package cache
class _Mirror(http.server.SimpleHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


def test_apt_cacher_ng_image_caches_packages(images, regional_plan, container, tmp_path):
    acng = _app(regional_plan, "apt-cacher-ng")
    conf = tmp_path / "acng.conf"
    conf.write_text(acng.config["acng.conf"])  # exactly the stack's ConfigMap
    os.chmod(conf, 0o644)
    # a Debian "mirror" on loopback: one package, served by this test
    pool = tmp_path / "mirror" / "debian" / "pool" / "main" / "h" / "hello"
    pool.mkdir(parents=True)
    deb = os.urandom(150_000)
    (pool / "hello_2.10-3_amd64.deb").write_bytes(deb)
    _Mirror.hits = []
    mirror = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()),
                                             functools.partial(_Mirror, directory=str(tmp_path / "mirror")))
    threading.Thread(target=mirror.serve_forever, daemon=True).start()
    port = _free_port()
    cache = _owned_dir(tmp_path / "cache")
    try:
        mounts = ["-v", f"{conf}:{acng.config_mount}:ro", "-v", f"{cache}:{acng.data_mount}"]
        for i, path in enumerate(acng.scratch):  # the pod's emptyDirs
            mounts += ["-v", f"{_owned_dir(tmp_path / f'scratch-{i}')}:{path}"]
        # the stack's command and args; this test adds only where to listen and the mirror's port
        c = container(["--network", "host", *AS_THE_POD, *mounts, "--entrypoint", acng.command[0], images["apt-cacher-ng"],
                       *acng.args, f"Port={port}", "BindAddress=127.0.0.1", f"AllowUserPorts=80 {mirror.server_port}"])
        report, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                report = urllib.request.urlopen(f"http://127.0.0.1:{port}/acng-report.html", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert report and "Apt-Cacher NG" in report, f"apt-cacher-ng did not answer; logs:\n{c.logs()}"
        proxy = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"}))
        url = f"http://127.0.0.1:{mirror.server_port}/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"
        first = proxy.open(url, timeout=30).read()
        second = proxy.open(url, timeout=30).read()
    finally:
        mirror.shutdown()
        mirror.server_close()
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest() == hashlib.sha256(deb).digest()
    assert _Mirror.hits == ["/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"]  # the second came from the cache
    cached = list(cache.rglob("hello_2.10-3_amd64.deb"))
    assert len(cached) == 1 and cached[0].read_bytes() == deb
