"""The region's node_exporter targets, served by the collector for Prometheus's http_sd.

``GET /sd/node`` answers the JSON of :func:`ctfleet.core.datapath.node_targets` for the
collector's registry (its profile's region, its imported fleet), so the regional
Prometheus scrapes each reference server's node_exporter (and the textfile metrics the
roles write) with the same CT labels as every other series; a SIGHUP that reloads the
fleet changes the targets at Prometheus's next refresh::

    [{"targets": ["10.4.0.10:9100"], "labels": {"ct": "04.421.01.0", "region": "04", "province": "04.421",
      "segment": "commune_under_15k", "lot": "3", "link": "adsl", "device": "srv1-04-421-01-0", "role": "server",
      "platform": "debian"}}]
"""

from __future__ import annotations

import json
from typing import Callable

from ctfleet.core.datapath import node_targets
from ctfleet.core.registry import Registry


def node_sd_app(registry: Callable[[], Registry]) -> Callable:
    """A WSGI app for :func:`ctfleet.monitors.http.serve`'s ``extra`` routes."""
    cache: dict = {"registry": None, "body": b""}

    def app(environ, start_response):
        reg = registry()
        if cache["registry"] is not reg:  # rebuilt only when the collector's registry changes
            cache.update(registry=reg, body=json.dumps(node_targets(reg), separators=(",", ":")).encode())
        start_response("200 OK", [("Content-Type", "application/json")])
        return [cache["body"]]

    return app
