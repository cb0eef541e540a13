"""A region's results service as a real process (uvicorn, TLS, basic auth) for tests and
the data-path demo: ``python -m ctfleet.results.service`` with files written here."""

from __future__ import annotations

import ssl
import sys
import urllib.request
from pathlib import Path

import bcrypt
from ruamel.yaml import YAML

from ctfleet.lab.procs.service import Service, free_port
from ctfleet.lab.tls import TLSFiles, make_tls
from ctfleet.results.forward import Endpoint


def _dump(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        YAML(typ="safe").dump(doc, fh)
    return path


class ResultsService(Service):
    """``users`` maps user -> password (stored bcrypt-hashed in the web config)."""

    def __init__(self, workdir: Path, database: str, profile: Path, users: dict[str, str], root: Path,
                 port: int | None = None, tls: TLSFiles | None = None):
        self.workdir, self.port, self.users = Path(workdir), port or free_port(), users
        self.tls = tls or make_tls(self.workdir / "tls")
        web = _dump(self.workdir / "web-config.yml", {
            "tls_server_config": {"cert_file": str(self.tls.cert), "key_file": str(self.tls.key)},
            # cost 4: the lab's throwaway users; deployments use htpasswd -B's default cost
            "basic_auth_users": {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode() for u, p in users.items()}})
        self.config = _dump(self.workdir / "results-service.yml", {
            "database": database, "listen": f"127.0.0.1:{self.port}", "web_config": str(web), "profile": str(profile)})
        self.url = f"https://127.0.0.1:{self.port}"
        super().__init__("results-service", [sys.executable, "-m", "ctfleet.results.service", "--config", str(self.config)],
                         self.workdir / "results-service.log", cwd=root)

    def start(self, timeout: float = 60.0) -> "ResultsService":  # type: ignore[override]
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        super().start(lambda: urllib.request.urlopen(self.url + "/-/healthy", timeout=1, context=ctx).status == 200, timeout)
        return self

    def endpoint(self, user: str) -> Endpoint:
        return Endpoint(self.url, user, self.users[user], cafile=str(self.tls.ca))
