"""A region's results service: audit batches in over HTTPS, into the results database.

Technicians' rollouts and ``ansible-pull`` hosts' store-and-forward queues send each
batch (the JSONL exchange format of :mod:`ctfleet.results.batch`) once per batch id::

    PUT /v1/batches/th01-20261127T080000Z-after      (body: JSON lines; basic auth; TLS)
    201 {"batch_id": "...", "stored": 31, "changed": 2}      stored now
    200 {"batch_id": "...", "stored": 31, "duplicate": true} already stored: nothing written
    400 {"error": "...", "problems": ["<id>:3: status: Input should be ..."]}  bad batch, nothing stored
    403 {"error": "...", "problems": ["<id>:1: ct: CT 05.… is in region 05; this service takes region 04 only"]}
    409 same id already stored with other content;  401 no or bad credentials;  413 too big
    503 database unavailable (the sender keeps the batch and retries)

    GET /v1/batches/<id>        {"batch_id", "results", "sha256", "received_at"} or 404
    GET /v1/history?ct=&device=&control=   when that control changed status
    GET /-/healthy              200, no authentication (liveness probe)

A 2xx answer is sent only after the batch's transaction committed, so a batch
acknowledged is stored whole, and a batch cut short by a crash is not stored at all
(the sender, not acknowledged, sends it again). TLS and the users are read from an
exporter-toolkit web-config file (:mod:`ctfleet.edges.webconfig`): each region's service
has its own users, so one region's credentials open no other region's service.

Served by Starlette on uvicorn; the database work runs in worker threads so a slow
commit never stalls other requests. Run it::

    ctfleet --profile regions/04.yaml results serve --config results-service.yml
    python -m ctfleet.results.service --config results-service.yml [--dry-run]

with a configuration::

    database: postgresql://ctfleet@results-db:5432/results   # or a SQLite file path
    database_password: env:CTFLEET_RESULTS_DB_PASSWORD       # a reference, never the password
    listen: 0.0.0.0:9163
    web_config: web-config.yml
    profile: regions/04.yaml        # the region (and registry) whose CTs this service takes
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ctfleet.core.conventions import RESULTS_BATCHES_PATH, RESULTS_SERVICE_PORT
from ctfleet.core.errors import CtfleetError, InputErrors
from ctfleet.core.listen import ListenAddress
from ctfleet.core.secrets import CredentialRef
from ctfleet.core.yamlio import load_yaml, validate
from ctfleet.edges.webconfig import BasicAuth, WebConfig, load_web_config
from ctfleet.results.batch import MAX_BATCH_BYTES, check_scope, parse_batch
from ctfleet.results.db import BatchConflict, SqlStore


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    database: str
    database_password: CredentialRef | None = None  # env:, file:, vault: (a refused value is never echoed)
    listen: ListenAddress(RESULTS_SERVICE_PORT) = f"127.0.0.1:{RESULTS_SERVICE_PORT}"  # type: ignore[valid-type]
    web_config: str | None = None
    profile: str | None = None
    max_batch_bytes: int = Field(default=MAX_BATCH_BYTES, ge=1024, le=MAX_BATCH_BYTES)



@dataclass
class Scope:
    """Whose results a service takes: a region (None = every region) and the CTs it knows."""

    region: str | None
    cts: set[str] | None


def _problems(exc: CtfleetError) -> list[str]:
    if isinstance(exc, InputErrors):
        return [str(p) for p in exc.problems]
    return [str(exc)]


def make_app(store: SqlStore, scope: Scope, users: dict[str, str] | None = None,
             max_batch_bytes: int = MAX_BATCH_BYTES) -> Starlette:
    """The ASGI app (tests drive it with Starlette's TestClient or a real uvicorn)."""
    auth = BasicAuth(users) if users else None

    def who(request: Request) -> str | None | JSONResponse:
        if auth is None:
            return ""
        user = auth.check(request.headers.get("authorization"))
        if user is None:
            return JSONResponse({"error": "authentication required"}, status_code=401,
                                headers={"WWW-Authenticate": 'Basic realm="ctfleet-results"'})
        return user

    async def put_batch(request: Request) -> JSONResponse:
        user = await run_in_threadpool(who, request)  # bcrypt: not on the event loop
        if isinstance(user, JSONResponse):
            return user
        batch_id = request.path_params["batch_id"]
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_batch_bytes:
            return JSONResponse({"error": f"batch of {int(declared):,} bytes is over the {max_batch_bytes:,} bytes limit: split it"},
                                status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_batch_bytes:
                return JSONResponse({"error": f"batch over the {max_batch_bytes:,} bytes limit: split it"}, status_code=413)
        try:
            batch = await run_in_threadpool(parse_batch, batch_id, bytes(body))
        except CtfleetError as exc:
            return JSONResponse({"error": f"batch {batch_id} refused, nothing stored", "problems": _problems(exc)}, status_code=400)
        try:
            check_scope(batch, scope.region, scope.cts)
        except CtfleetError as exc:
            return JSONResponse({"error": f"batch {batch_id} refused, nothing stored: results outside "
                                          f"{'region ' + scope.region if scope.region else 'the registry'}",
                                 "problems": _problems(exc)}, status_code=403)
        try:
            done = await run_in_threadpool(store.ingest, batch, user or "")
        except BatchConflict as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except Exception as exc:  # noqa: BLE001 - the database is down or busy: the sender keeps the batch
            from sqlalchemy.exc import DBAPIError

            if isinstance(exc, DBAPIError):
                return JSONResponse({"error": f"results database unavailable ({type(exc.orig).__name__}); retry later"},
                                    status_code=503, headers={"Retry-After": "10"})
            raise
        doc = {"batch_id": done.batch_id, "stored": done.stored}
        if done.duplicate:
            return JSONResponse({**doc, "duplicate": True}, status_code=200)
        return JSONResponse({**doc, "changed": done.changed}, status_code=201)

    async def get_batch(request: Request) -> JSONResponse:
        user = await run_in_threadpool(who, request)
        if isinstance(user, JSONResponse):
            return user
        try:
            found = await run_in_threadpool(store.batch, request.path_params["batch_id"])
        except CtfleetError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(found) if found else JSONResponse({"error": "no such batch"}, status_code=404)

    async def get_history(request: Request) -> JSONResponse:
        user = await run_in_threadpool(who, request)
        if isinstance(user, JSONResponse):
            return user
        q = request.query_params
        if not q.get("ct") or not q.get("control"):
            return JSONResponse({"error": "ct and control are required (device for a device's control)"}, status_code=400)
        rows = await run_in_threadpool(store.history, q["ct"], q.get("device") or None, q["control"])
        return JSONResponse([{"observed_at": c.observed_at.isoformat(), "status": c.status.value,
                              "previous_status": c.previous_status.value if c.previous_status else None,
                              "source": c.source.value, "batch_id": c.batch_id} for c in rows])

    async def healthy(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "region": scope.region})

    return Starlette(routes=[
        Route(RESULTS_BATCHES_PATH + "/{batch_id}", put_batch, methods=["PUT"]),
        Route(RESULTS_BATCHES_PATH + "/{batch_id}", get_batch, methods=["GET"]),
        Route("/v1/history", get_history, methods=["GET"]),
        Route("/-/healthy", healthy, methods=["GET"]),
    ])


# --------------------------------------------------------------------- running it


def load_config(path: Path) -> ServiceConfig:
    return validate(load_yaml(Path(path), str(path)), ServiceConfig)


def _database(cfg: ServiceConfig, root: Path) -> str:
    from ctfleet.results.db import database_url

    url = database_url(cfg.database if "://" in cfg.database or Path(cfg.database).is_absolute() else root / cfg.database)
    if cfg.database_password:
        from ctfleet.edges.credentials import resolve
        from ctfleet.results.db import parse_url

        url = parse_url(url).set(password=resolve(cfg.database_password, root).reveal()).render_as_string(hide_password=False)
    return url


def build(config_path: Path, profile: str | None = None):
    """(config, store, scope, web config) from a config file; the profile names the region."""
    from ctfleet.project import load_project

    cfg = load_config(config_path)
    project = load_project(profile or cfg.profile, with_fleet=False)
    web = None
    if cfg.web_config:
        wp = Path(cfg.web_config)
        web = load_web_config(wp if wp.is_absolute() else config_path.parent / wp)
    store = SqlStore(_database(cfg, project.root))
    scope = Scope(region=project.profile.region, cts=set(project.registry.cts))
    return cfg, store, scope, web


def start(config_path: Path, profile: str | None = None, migrate: bool = True):
    """:func:`build`, then the schema migrated; a database that cannot be reached or refuses the
    login is one :class:`~ctfleet.results.db.DatabaseUnavailable` naming the URL (no password)."""
    from ctfleet.results.db import database_error

    cfg, store, scope, web = build(config_path, profile)
    if migrate:
        try:
            store.migrate()
        except Exception as exc:
            err = database_error(exc, store.url)
            if err is None:
                raise
            store.dispose()
            raise err from None
    return cfg, store, scope, web


def describe(cfg: ServiceConfig, store: SqlStore, scope: Scope, web: WebConfig | None) -> str:
    """What a started service serves, for one line on screen (the database URL without password)."""
    where = f"region {scope.region}" if scope.region else "every region"
    return (f"{where} ({len(scope.cts or ())} CTs), database {store.root}, "
            f"{'https' if web and web.tls_server_config else 'http'}://{cfg.listen}{RESULTS_BATCHES_PATH}/<id>")


def run(cfg: ServiceConfig, store: SqlStore, scope: Scope, web: WebConfig | None) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn's handlers: in-flight requests finish first)."""
    import uvicorn

    host, _, port = cfg.listen.rpartition(":")
    kw = {}
    if web and web.tls_server_config:
        tls = web.tls_server_config
        kw.update(ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file)
        if tls.client_ca_file:
            import ssl

            kw.update(ssl_ca_certs=tls.client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED
                      if tls.client_auth_type == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL)
    app = make_app(store, scope, web.basic_auth_users if web else None, cfg.max_batch_bytes)
    stopped: list[int] = []

    def _stopped(signum, _frame) -> None:
        stopped.append(signum)

    # uvicorn handles SIGTERM/SIGINT while it serves (in-flight requests finish), then raises the
    # signal again for the handlers it found: these record it, so a stop is a clean exit (0).
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.run(app, host=host.strip("[]"), port=int(port), log_level="warning", access_log=False, **kw)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctfleet.results.service",
                                 description="ctfleet results service: audit batches in over HTTPS, into the results database")
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--profile", default=None, help="ctfleet profile (default: the config's, ctfleet.yaml or CTFLEET_PROFILE)")
    ap.add_argument("--dry-run", action="store_true", help="validate the configuration, migrate nothing, exit")
    args = ap.parse_args(argv)
    try:
        cfg, store, scope, web = start(args.config, args.profile, migrate=not args.dry_run)
    except (CtfleetError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"ok: {args.config}: {describe(cfg, store, scope, web)}")
        return 0
    print(f"results service: {describe(cfg, store, scope, web)}", file=sys.stderr, flush=True)
    run(cfg, store, scope, web)
    return 0


__all__ = ["ServiceConfig", "Scope", "make_app", "load_config", "build", "start", "describe", "run", "main"]

if __name__ == "__main__":
    sys.exit(main())
