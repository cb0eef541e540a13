"""The Prometheus exporter-toolkit web configuration (``--web.config.file``), for every
ctfleet HTTP endpoint: the collector's /metrics and the region's results service.

::

    tls_server_config:
      cert_file: /etc/ctfleet/tls.crt
      key_file: /etc/ctfleet/tls.key
    basic_auth_users:
      tech-04: $2y$10$...   # bcrypt hash, as produced by htpasswd -B

Unknown keys fail, naming the file and key. :class:`BasicAuth` checks a request's
``Authorization`` header against the bcrypt hashes (the ``bcrypt`` library, as
exporter-toolkit uses), caching good and bad pairs since bcrypt is slow on purpose.
"""

from __future__ import annotations

import base64
import ssl
import threading
from pathlib import Path

import bcrypt
from pydantic import BaseModel, ConfigDict

from ctfleet.core.yamlio import load_yaml, validate


class TLSServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str | None = None


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = {}
    http_server_config: dict | None = None

    def resolved(self, base: Path) -> "WebConfig":
        """File paths relative to ``base`` (the web-config file's directory) made absolute."""
        tls = self.tls_server_config
        if tls is None:
            return self
        fix = lambda p: p if p is None or Path(p).is_absolute() else str(base / p)  # noqa: E731
        return self.model_copy(update={"tls_server_config": tls.model_copy(update={
            "cert_file": fix(tls.cert_file), "key_file": fix(tls.key_file), "client_ca_file": fix(tls.client_ca_file)})})

    def ssl_context(self) -> ssl.SSLContext | None:
        tls = self.tls_server_config
        if tls is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED if tls.client_auth_type == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL
        return ctx


def load_web_config(path: Path) -> WebConfig:
    path = Path(path)
    return validate(load_yaml(path, str(path)), WebConfig).resolved(path.parent)


class BasicAuth:
    """``user = check(header)``: the authenticated user name, or ``None``."""

    def __init__(self, users: dict[str, str]):
        self.hashes = {u: h.encode() for u, h in users.items()}
        self._cache: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()

    def check(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if user not in self.hashes:
            return None
        key = (user, pw)
        with self._lock:
            ok = self._cache.get(key)
        if ok is None:
            ok = bcrypt.checkpw(pw.encode(), self.hashes[user])
            with self._lock:
                if len(self._cache) > 10_000:  # bounded: a password-guessing client cannot grow it forever
                    self._cache.clear()
                self._cache[key] = ok
        return user if ok else None
