"""Store and forward: batches wait in a spool directory until the region's results
service has them.

A host or a technician's laptop writes each batch to ``SPOOL/<batch id>.jsonl``
(:func:`enqueue`, atomic); :func:`deliver` sends the spool in name order with
``PUT /v1/batches/<batch id>`` and removes a file only when the service answered
201 (stored) or 200 (already stored) — so a batch is delivered at least once and, the
service being idempotent by batch id, stored exactly once. A batch the service refuses
(400 bad, 403 outside the region, 409 id reused) moves to ``SPOOL/rejected/`` with the
reason beside it, and delivery goes on; a network error, 401 or 5xx stops the run and
keeps everything for the next one.
"""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ctfleet.core.compliance import ControlResult
from ctfleet.core.conventions import RESULTS_BATCHES_PATH
from ctfleet.core.errors import CtfleetError
from ctfleet.core.secrets import CredentialRef
from ctfleet.results import atomic_write_text
from ctfleet.results.batch import check_batch_id, render_batch

REFUSED = (400, 403, 409, 413)


def enqueue(spool: Path, batch_id: str, results: Iterable[ControlResult], inventories: Iterable = ()) -> Path:
    check_batch_id(batch_id)
    path = Path(spool) / f"{batch_id}.jsonl"
    atomic_write_text(path, render_batch(results, inventories))
    return path


@dataclass
class Delivery:
    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    stopped: str | None = None  # why delivery stopped early (network, auth, server)

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.stopped

    def as_dict(self) -> dict:
        return {"stored": self.stored, "duplicates": self.duplicates, "rejected": self.rejected, "kept": self.kept,
                "stopped": self.stopped}


@dataclass(frozen=True)
class Endpoint:
    """Where and how to deliver: ``https://results.sdr-04.example:9163``, a user, a
    password (already resolved from its reference) and the CA that signed the service's
    certificate."""

    url: str
    user: str | None = None
    password: str | None = None
    cafile: str | None = None
    timeout: float = 30.0

    def __repr__(self) -> str:  # never the password
        return f"Endpoint({self.url!r}, user={self.user!r})"

    def put(self, batch_id: str, body: bytes) -> tuple[int, dict]:
        """PUT one batch on a kept-alive connection (one per thread): a TLS handshake per
        batch cost more than storing a host's audit."""
        import http.client
        import threading
        import urllib.parse

        u = urllib.parse.urlsplit(self.url)
        headers = {"Content-Type": "application/x-ndjson"}
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        local = self.__dict__.setdefault("_local", threading.local())  # frozen dataclass: per-instance cache
        for attempt in (0, 1):
            conn = getattr(local, "conn", None)
            if conn is None:
                if u.scheme == "https":
                    ctx = ssl.create_default_context(cafile=self.cafile)
                    conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=self.timeout, context=ctx)
                else:
                    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=self.timeout)
                local.conn = conn
            try:
                conn.request("PUT", u.path.rstrip("/") + f"{RESULTS_BATCHES_PATH}/{batch_id}", body=body, headers=headers)
                r = conn.getresponse()
                raw = r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                local.conn = None
                if attempt:
                    raise
                continue  # a kept-alive connection the server closed meanwhile: once more on a new one
            except OSError:
                conn.close()
                local.conn = None
                raise
            try:
                doc = json.loads(raw or b"{}")
            except ValueError:
                doc = {"error": r.reason}
            return r.status, doc
        raise AssertionError("unreachable")


def deliver(spool: Path, endpoint: Endpoint) -> Delivery:
    spool = Path(spool)
    out = Delivery()
    files = sorted(spool.glob("*.jsonl"))
    for i, path in enumerate(files):
        batch_id = path.stem
        try:
            status, doc = endpoint.put(batch_id, path.read_bytes())
        except (OSError, ValueError) as exc:  # connection refused/reset, TLS, timeout
            out.stopped = f"{batch_id}: {type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            out.kept = [p.stem for p in files[i:]]
            return out
        if status in (200, 201):
            (out.duplicates if doc.get("duplicate") else out.stored).append(batch_id)
            path.unlink()
        elif status in REFUSED:
            reason = "; ".join([doc.get("error", f"HTTP {status}"), *doc.get("problems", [])])
            out.rejected[batch_id] = reason
            rej = spool / "rejected"
            rej.mkdir(exist_ok=True)
            atomic_write_text(rej / f"{batch_id}.reason", reason + "\n")
            path.replace(rej / path.name)
        else:
            out.stopped = f"{batch_id}: HTTP {status}: {doc.get('error', '')}"
            out.kept = [p.stem for p in files[i:]]
            return out
    return out


# ---------------------------------------------------------------------- a technician's link to the region
class ServiceLink(BaseModel):
    """The region's results service as a profile names it, so that a technician's rollouts
    and collects send their audits there (``results_service:`` in ``ctfleet.yaml``)::

        results_service:
          url: https://results.sdr-04.example.ma:9163
          user: technicien-04
          password: env:CTFLEET_RESULTS_04   # a reference, never the password
          cafile: /etc/ctfleet/sdr-04-ca.pem
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str
    user: str | None = Field(default=None, min_length=1, max_length=128)
    password: CredentialRef | None = None  # env:, file:, vault: (a refused value is never echoed)
    cafile: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0.0, le=600.0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        import urllib.parse

        u = urllib.parse.urlsplit(v)
        if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment or u.username or u.password:
            raise ValueError("valid: http(s)://HOST[:PORT][/PATH], without user, password, query or fragment "
                             "(e.g. https://results.sdr-04.example.ma:9163)")
        try:
            u.port
        except ValueError:
            raise ValueError("the port must be a number from 1 to 65535") from None
        return v



def endpoint(link: ServiceLink, root: Path) -> Endpoint:
    """The link with its password resolved (raises the credentials error, never the secret)."""
    password = None
    if link.password is not None:
        from ctfleet.edges.credentials import resolve

        password = resolve(link.password, root).reveal()
    return Endpoint(link.url, user=link.user, password=password, cafile=link.cafile, timeout=link.timeout_seconds)


def send(spool: Path, batch_id: str, results: Iterable[ControlResult], link: ServiceLink, root: Path) -> Delivery:
    """Queue one batch in the spool, then deliver the whole spool (older batches first).
    Whatever cannot go now — the service unreachable, credentials missing — stays queued
    for :func:`deliver_spool` (``ctfleet rollout deliver``); nothing raises."""
    from ctfleet.core.inventory import InventoryRecord

    rows = list(results)  # control results, and the run's inventory records after them
    if rows:
        enqueue(spool, batch_id, [r for r in rows if not isinstance(r, InventoryRecord)],
                [r for r in rows if isinstance(r, InventoryRecord)])
    return deliver_spool(spool, link, root)


def deliver_spool(spool: Path, link: ServiceLink, root: Path) -> Delivery:
    spool = Path(spool)
    try:
        ep = endpoint(link, root)
    except CtfleetError as exc:
        return Delivery(kept=sorted(p.stem for p in spool.glob("*.jsonl")), stopped=str(exc))
    return deliver(spool, ep)
