"""The app factory: `create_app(settings)` builds the API (/api/v1), the health checks
and the dashboard. The database pool and the live feed live for the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import fastapi.routing
import psycopg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from psycopg_pool import ConnectionPool
from pydantic import BaseModel
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.alerts import api as alerts_api
from fleet.auth import api as auth_api
from fleet.auth import service as auth_service
from fleet.auth.models import ALL_ROLES
from fleet.config import Settings
from fleet.depots import api as depots_api
from fleet.districts import api as districts_api
from fleet.imports import api as imports_api
from fleet.jobs import engine
from fleet.jobs.worker import InProcessWorker
from fleet.plans import api as plans_api
from fleet.plans import jobs as plans_jobs
from fleet.points import api as points_api
from fleet.positions import api as positions_api
from fleet.positions.service import LatestSnapshot, LiveFeed, SiteCache
from fleet.reports import api as reports_api
from fleet.roads import api as roads_api
from fleet.stations import api as stations_api
from fleet.trucks import api as trucks_api
from fleet.web import errors
from fleet.web.deps import Allow, Anyone, SettingsDep, reject_unknown_query
from fleet.web.limits import BodyLimit, BodyLimits

log = logging.getLogger("fleet.web")
API_PREFIX = "/api/v1"
VERSION = "0.1.0"

# Routers of each domain, in the order they appear in the API docs. Imported statically:
# a domain whose api module is missing or broken stops the app at start-up.
ROUTERS: tuple[APIRouter, ...] = (
    auth_api.router,
    districts_api.router,
    depots_api.router,
    stations_api.router,
    points_api.router,
    trucks_api.router,
    imports_api.router,
    roads_api.router,
    positions_api.router,
    plans_api.router,
    alerts_api.router,
    reports_api.router,
)


def _make_pool(settings: Settings) -> ConnectionPool:
    def configure(conn: psycopg.Connection) -> None:
        conn.autocommit = True

    pool = ConnectionPool(
        settings.storage.database_dsn(),
        min_size=2,
        max_size=settings.web.http_db_pool_size,
        open=False,
        configure=configure,
        # Discard connections the server dropped (restart, failover) at checkout
        # instead of failing one request per stale connection.
        check=ConnectionPool.check_connection,
        kwargs={"connect_timeout": 5, "application_name": "clearday-api"},
        timeout=10.0,
        name="clearday-api",
    )
    pool.open(wait=True, timeout=15)
    return pool


class MapConfig(BaseModel):
    tile_url: str | None
    tile_attribution: str
    tile_crs: str


class ClientConfig(BaseModel):
    version: str
    timezone: str
    offline_after_s: int
    map: MapConfig


def _allows(dependant: Dependant) -> Iterator[Allow]:
    for dep in dependant.dependencies:
        if isinstance(dep.call, Allow):
            yield dep.call
        yield from _allows(dep)


def api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every API route. FastAPI >= 0.16x keeps included routers
    nested (`iter_route_contexts` flattens them); older versions flatten on include."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path_format, route
        return
    for context in iter_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            yield str(context.path_format), route


def route_roles(route: APIRoute) -> frozenset[str] | None:
    """The roles a route admits, or None for a public route."""
    allows = list(_allows(route.dependant))
    if not allows:
        return None
    roles = frozenset(ALL_ROLES)
    for allow in allows:
        roles &= allow.roles
    return frozenset(r.value for r in roles)


def _csp(settings: Settings) -> str:
    img = "'self' data: blob:"
    if settings.web.map_tile_url:
        parts = urlsplit(settings.web.map_tile_url.replace("{s}", "a"))
        if parts.scheme in ("http", "https") and parts.hostname:
            host = (
                parts.netloc.replace("a.", "*.", 1)
                if "{s}" in settings.web.map_tile_url
                else parts.netloc
            )
            img += f" {parts.scheme}://{host}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src {img}; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    )


def body_limits(settings: Settings) -> BodyLimits:
    return BodyLimits(
        default_bytes=settings.web.http_max_body_bytes,
        by_prefix=(
            (f"{API_PREFIX}/auth/login", settings.web.http_max_login_body_bytes),
            (f"{API_PREFIX}/import", settings.web.http_max_import_body_bytes),
        ),
    )


def _token_is_live(app: FastAPI, token: str) -> bool:
    """For the body limit: whether a request may send an import-sized body. With the
    database unreachable the answer is no; the route itself then answers 503."""
    pool: ConnectionPool = app.state.pool
    try:
        with pool.connection() as conn:
            return auth_service.resolve_token(conn, token=token, now=datetime.now(UTC)) is not None
    except psycopg.Error:
        return False


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What the app holds while it serves: the pool, the live feed, the job engine and,
    when configured, a planning worker of its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = _make_pool(settings)
        app.state.latest = LatestSnapshot(
            sites=app.state.sites,
            offline_after_s=settings.web.live_offline_after_s,
            max_age_s=settings.web.live_snapshot_max_age_s,
        )
        app.state.live_feed = LiveFeed(
            app.state.pool,
            poll_interval_s=settings.web.live_poll_interval_s,
            snapshot=app.state.latest,
        )
        app.state.live_feed.start()
        dsn = settings.storage.database_dsn()
        app.state.jobs = engine.make_app(dsn, [plans_jobs.register]).open()
        worker = None
        if settings.planning.api_worker_concurrency:
            config = replace(
                engine.WorkerConfig.from_settings(settings),
                concurrency=settings.planning.api_worker_concurrency,
            )
            worker = InProcessWorker(engine.make_app(dsn, [plans_jobs.register]), dsn, config)
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await asyncio.to_thread(worker.stop)
            app.state.jobs.close()
            await app.state.live_feed.stop()
            app.state.pool.close()

    return lifespan


config_router = APIRouter()


@config_router.get("/config", tags=["dashboard"], summary="Settings the dashboard needs")
def client_config(principal: Anyone, settings: SettingsDep) -> ClientConfig:
    return ClientConfig(
        version=VERSION,
        timezone=settings.timezone,
        offline_after_s=settings.web.live_offline_after_s,
        map=MapConfig(
            tile_url=settings.web.map_tile_url,
            tile_attribution=settings.web.map_tile_attribution,
            tile_crs=settings.web.map_tile_crs,
        ),
    )


health_router = APIRouter()


@health_router.get("/healthz", tags=["health"], summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get(
    "/readyz",
    tags=["health"],
    summary="The database answers",
    responses=errors.problem_responses(503),
)
def readyz(request: Request) -> Response:
    pool: ConnectionPool = request.app.state.pool
    try:
        with pool.connection(timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return errors.problem(503, f"database not ready: {type(exc).__name__}")
    return JSONResponse({"status": "ready"})


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="ClearDay API",
        version=VERSION,
        description="Fleet tracking, route planning and 日产日清 supervision for municipal "
        "waste collection. Log in with POST /api/v1/auth/login and send the token as "
        "`Authorization: Bearer <token>`. Errors are `application/problem+json`.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served from the package's own assets: _mount_api_docs
        redoc_url=None,
        lifespan=_lifespan(settings),
    )
    app.state.settings = settings
    app.state.sites = SiteCache(
        station_radius_m=settings.alerts.station_radius_m,
        depot_radius_m=settings.alerts.depot_radius_m,
    )
    errors.install(app)
    app.add_middleware(
        BodyLimit, limits=body_limits(settings), token_is_live=lambda t: _token_is_live(app, t)
    )
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(reject_unknown_query)])
    for router in (config_router, *ROUTERS):
        api.include_router(router)
    app.include_router(api)
    app.include_router(health_router)
    _mount_dashboard(app, settings)
    _mount_api_docs(app)
    _customize_openapi(app)
    return app


def _mount_dashboard(app: FastAPI, settings: Settings) -> None:
    static = resources.files("fleet.web") / "static"
    csp = _csp(settings)
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }

    app.add_middleware(SecurityHeaders)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(str(static / "index.html"), headers=headers)

    app.mount("/static", StaticFiles(directory=str(static)), name="static")


# Swagger UI and ReDoc: scripts and styles from this server only; ReDoc renders in a
# worker it builds from a blob.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _mount_api_docs(app: FastAPI) -> None:
    """/api/docs (Swagger UI) and /api/redoc from the assets that fastapi-offline ships,
    so that they work on a network without the internet; /docs leads to /api/docs."""
    assets = resources.files("fastapi_offline") / "static"
    pages = resources.files("fleet.web") / "static" / "apidocs"
    headers = {"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"}

    @app.get("/api/docs", include_in_schema=False)
    def swagger_ui() -> FileResponse:
        return FileResponse(str(pages / "swagger.html"), headers=headers)

    @app.get("/api/redoc", include_in_schema=False)
    def redoc() -> FileResponse:
        return FileResponse(str(pages / "redoc.html"), headers=headers)

    @app.get("/docs", include_in_schema=False)
    def docs() -> RedirectResponse:
        return RedirectResponse("/api/docs")

    app.mount("/api/docs/assets", StaticFiles(directory=str(assets)), name="api-docs-assets")


class SecurityHeaders:
    """nosniff and no-referrer on every response, no-store on API responses. A plain
    ASGI middleware: Starlette's BaseHTTPMiddleware costs a task and a stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith(API_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if api:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _customize_openapi(app: FastAPI) -> None:
    """Document what every route really answers: problem+json errors, and the roles
    that may call it (`x-roles`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = errors.Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        for name, sub in components["Problem"].pop("$defs", {}).items():
            components[name] = sub
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        problem_ref = {"$ref": "#/components/schemas/Problem"}
        for path, route in api_routes(app):
            if not route.include_in_schema:
                continue
            roles = route_roles(route)
            for method in route.methods or ():
                operation = schema["paths"].get(path, {}).get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                statuses: set[int] = set()
                if roles is not None:
                    statuses |= {401, 403}
                    operation["x-roles"] = sorted(roles)
                    operation["description"] = (
                        operation.get("description", "") + f"\n\nRoles: {', '.join(sorted(roles))}."
                    ).strip()
                if route.dependant.path_params:
                    statuses.add(404)
                if route.dependant.body_params:
                    statuses.add(400)  # a body that is not even text
                    statuses.add(413)  # over the route's body limit (fleet/web/limits.py)
                    if path != f"{API_PREFIX}/auth/login":
                        statuses.add(409)
                if path == f"{API_PREFIX}/auth/login":
                    statuses |= {401, 429}
                if (
                    route.dependant.query_params
                    or route.dependant.path_params
                    or route.dependant.body_params
                ):
                    statuses.add(422)
                for status in sorted(statuses):
                    entry = responses.setdefault(
                        str(status), {"description": errors._TITLES.get(status, "Error")}
                    )
                    entry["content"] = {errors.PROBLEM_JSON: {"schema": problem_ref}}
                if "422" in responses:
                    responses["422"]["content"] = {errors.PROBLEM_JSON: {"schema": problem_ref}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """For `uvicorn --factory fleet.web.app:app_from_env` (several workers)."""
    return create_app(Settings())
