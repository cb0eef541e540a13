"""A real Alertmanager (Debian package) on loopback with its own data dir, for the demo and tests."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from ctfleet.lab.procs.service import Service, free_port, require


class Alertmanager(Service):
    """``Alertmanager(config, workdir).start()``; ``.url`` is its API base, ``.address`` HOST:PORT.

    Clustering is off (``--cluster.listen-address=``): one instance, no gossip port to collide on.
    """

    def __init__(self, config: Path, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [require("prometheus-alertmanager", "prometheus-alertmanager"), f"--config.file={config}",
                f"--storage.path={workdir / 'data'}", f"--web.listen-address={self.address}",
                "--cluster.listen-address=", "--log.level=warn"]
        super().__init__("alertmanager", argv, workdir / "alertmanager.log")

    def start(self, timeout: float = 30.0) -> "Alertmanager":  # type: ignore[override]
        super().start(lambda: urllib.request.urlopen(self.url + "/-/ready", timeout=1).status == 200, timeout)
        return self
