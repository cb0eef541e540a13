"""A real Prometheus (Debian package) on loopback with its own data dir, for the demo and tests."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from ctfleet.core.conventions import COLLECTOR_JOB
from ctfleet.lab.procs.service import Service, ServiceError, free_port, require


def prometheus_config(exporter: str, rule_files: list[str], scrape_interval: str = "5s",
                      alertmanager: str | None = None, job: str = COLLECTOR_JOB, basic_auth: tuple[str, str] | None = None) -> dict:
    scrape: dict[str, Any] = {"job_name": job, "scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                              "static_configs": [{"targets": [exporter]}]}
    if basic_auth:
        scrape["basic_auth"] = {"username": basic_auth[0], "password": basic_auth[1]}
    cfg: dict[str, Any] = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
                           "rule_files": rule_files, "scrape_configs": [scrape]}
    if alertmanager:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return cfg


class Prometheus(Service):
    def __init__(self, workdir: Path, config: dict, port: int | None = None, extra_args: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        cfg_path = workdir / "prometheus.yml"
        with cfg_path.open("w") as fh:
            YAML(typ="safe").dump(config, fh)
        argv = [require("prometheus", "prometheus"), f"--config.file={cfg_path}", f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle", "--log.level=warn", *extra_args]
        super().__init__("prometheus", argv, workdir / "prometheus.log")

    def start(self, timeout: float = 30.0) -> "Prometheus":  # type: ignore[override]
        super().start(lambda: urllib.request.urlopen(self.url + "/-/ready", timeout=1).status == 200, timeout)
        return self

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise ServiceError(f"Prometheus API {path}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.api("query", query=promql)["result"]

    def wait_for(self, promql: str, timeout: float = 60.0) -> list[dict]:
        """Poll until the query returns series (e.g. after the first scrape and rule evaluation)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.query(promql)
            if res:
                return res
            time.sleep(0.5)
        raise ServiceError(f"no series for {promql!r} after {timeout:.0f} s")
