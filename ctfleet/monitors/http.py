"""Serving /metrics with the Prometheus exporter-toolkit web configuration file.

The file format is the one every Prometheus exporter reads (``--web.config.file``)::

    tls_server_config:
      cert_file: /etc/ctfleet/tls.crt
      key_file: /etc/ctfleet/tls.key
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash, as produced by htpasswd -B

prometheus-client's own server has TLS but no basic auth, so the WSGI app it makes is
wrapped here with a bcrypt check (the ``bcrypt`` library, as exporter-toolkit uses) and
served by wsgiref on a threading server. Unknown keys fail, naming the file and key.
"""

from __future__ import annotations

import base64
import ssl
import threading
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt
from prometheus_client import CollectorRegistry, make_wsgi_app

# The exporter-toolkit web config: one model, shared with the results service.
from ctfleet.edges.webconfig import TLSServerConfig, WebConfig, load_web_config  # noqa: F401 (re-exported)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes are not news
        pass


def with_basic_auth(app: Callable, users: dict[str, str], realm: str = "ctfleet") -> Callable:
    hashes = {u: h.encode() for u, h in users.items()}
    cache: dict[tuple[str, str], bool] = {}  # bcrypt is slow on purpose; Prometheus scrapes often

    def wrapped(environ, start_response):
        header = environ.get("HTTP_AUTHORIZATION", "")
        ok = False
        if header.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(header[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, pw = "", ""
            key = (user, pw)
            if key not in cache and user in hashes:
                cache[key] = bcrypt.checkpw(pw.encode(), hashes[user])
            ok = cache.get(key, False)
        if not ok:
            start_response("401 Unauthorized", [("WWW-Authenticate", f'Basic realm="{realm}"'), ("Content-Type", "text/plain")])
            return [b"Unauthorized\n"]
        return app(environ, start_response)

    return wrapped


def cached_metrics_app(registry: CollectorRegistry, version: Callable[[], object],
                       render: Callable[[], bytes] | None = None) -> Callable:
    """Serve the exposition text rendered once per ``version()`` change (one sweep), plain or gzip.

    Rendering a national snapshot takes about a second of CPU under the GIL the poller
    also needs; rendering it on every scrape (as prometheus-client's own app does) made
    scrapes time out while a sweep was running. The collector's data only changes once
    per sweep, so the text is rendered then, and scrapes just send bytes. ``render``
    (e.g. ``CtfleetCollector.exposition``) renders the text directly instead of through
    ``generate_latest(registry)``.
    """
    import gzip

    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    lock = threading.Lock()
    cache: dict[str, object] = {"version": object(), "plain": b"", "gzip": None}

    def app(environ, start_response):
        v = version()
        gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        with lock:
            if cache["version"] is not v:
                plain = render() if render is not None else generate_latest(registry)
                cache.update(version=v, plain=plain, gzip=None)
            if gzipped and cache["gzip"] is None:  # compressed once per version, when first asked for
                cache["gzip"] = gzip.compress(cache["plain"], compresslevel=1)
            plain, gz = cache["plain"], cache["gzip"]
        if gzipped:
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Encoding", "gzip")])
            return [gz]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [plain]

    return app


def serve(registry: CollectorRegistry, host: str, port: int, web_config: WebConfig | None = None,
          extra: dict[str, Callable] | None = None, version: Callable[[], object] | None = None,
          render: Callable[[], bytes] | None = None) -> tuple[WSGIServer, threading.Thread]:
    """Start serving /metrics (and any ``extra`` WSGI apps by path) in a thread.

    With ``version`` (e.g. ``CtfleetCollector.version``), the text is rendered once per change.
    """
    metrics_app = cached_metrics_app(registry, version, render) if version else make_wsgi_app(registry)
    routes = dict(extra or {})

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path in routes:
            return routes[path](environ, start_response)
        if path in ("/metrics", "/"):
            return metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]

    if web_config and web_config.basic_auth_users:
        app = with_basic_auth(app, web_config.basic_auth_users)
    httpd = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    if web_config and web_config.tls_server_config:
        tls = web_config.tls_server_config
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED if tls.client_auth_type == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, name="ctfleet-exporter", daemon=True)
    thread.start()
    return httpd, thread
