"""Prometheus's HTTP API, read-only: instant queries at a fixed time and range queries.

Thin on purpose (the report's logic takes these as injected functions). Every instant
query of one report is evaluated at the same timestamp, so the figures of a report are
consistent with each other and can be checked against Prometheus afterwards.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ctfleet.core.errors import CtfleetError

_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PrometheusError(CtfleetError):
    pass


def parse_duration(text: str) -> int:
    """Seconds in a Prometheus-style duration.

    >>> parse_duration("7d"), parse_duration("90m")
    (604800, 5400)
    """
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise PrometheusError(f"--range: {text!r} is not a duration (valid: a number and s, m, h, d or w, e.g. 1h, 7d)")
    return int(m.group(1)) * _UNIT[m.group(2)]


class PrometheusAPI:
    def __init__(self, url: str, timeout: float = 60.0):
        if not re.match(r"^https?://", url):
            raise PrometheusError(f"--prometheus: {url!r} is not an http(s) URL (valid: e.g. http://127.0.0.1:9090)")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        data = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:  # Prometheus answers 400/422 with a JSON error
            try:
                body = json.load(exc)
            except ValueError:
                raise PrometheusError(f"{url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {getattr(exc, 'reason', exc)}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{url} {params.get('query', '')!r}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("query", **params)["result"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict]:
        return self.api("query_range", query=promql, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")["result"]
