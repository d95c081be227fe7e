"""/api/v1/positions/latest, /api/v1/positions/stream (SSE), /api/v1/trucks/{id}/track"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter

from fleet.auth import service as auth_service
from fleet.positions import repo, service
from fleet.positions.models import LatestPosition, LatestPositions, Track, TrackPoint
from fleet.web.deps import Anyone, Conn, SettingsDep, district_scope, ensure_district, now_utc
from fleet.web.errors import ApiError, not_found
from fleet.web.fields import PathId

router = APIRouter(tags=["fleet"])
KEEPALIVE_S = 15.0
RECHECK_TOKEN_S = 60.0
MAX_TRACK_RANGE = timedelta(days=31)


_LATEST = TypeAdapter(LatestPositions)


def _encode_latest(snapshot: service.Snapshot, trucks: list[LatestPosition]) -> bytes:
    return _LATEST.dump_json(LatestPositions(at=snapshot.at, trucks=trucks))


@router.get(
    "/positions/latest",
    summary="Latest position and status of every truck",
    description="A snapshot at most `live_snapshot_max_age_s` (default 1 s) old, shared by "
    "every caller of this API process; `at` says when it was taken.",
    response_model=LatestPositions,
)
def latest_positions(
    request: Request,
    principal: Anyone,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    latest: service.LatestSnapshot = request.app.state.latest
    snapshot = latest.get(request.app.state.pool)
    body = latest.encoded(snapshot, district_scope(principal, district_id), _encode_latest)
    return Response(body, media_type="application/json")


@router.get("/trucks/{truck_id}/track", summary="A truck's track for a time range")
def truck_track(
    conn: Conn,
    principal: Anyone,
    settings: SettingsDep,
    truck_id: PathId,
    start_at: Annotated[
        datetime | None, Query(description="default: local midnight today (ISO 8601 with offset)")
    ] = None,
    end_at: Annotated[datetime | None, Query(description="default: now")] = None,
    max_points: Annotated[
        int, Query(ge=10, le=20_000, description="longer tracks are thinned evenly")
    ] = 2000,
) -> Track:
    district = repo.truck_district(conn, truck_id=truck_id)
    if district is None:
        raise not_found("truck", truck_id)
    ensure_district(principal, district)
    now = now_utc()
    end = end_at or now
    start = start_at or datetime.combine(now.astimezone(settings.tz).date(), time(0), settings.tz)
    for name, value in (("start_at", start), ("end_at", end)):
        if value.tzinfo is None:
            raise ApiError(
                422,
                f"{name}: give a time zone offset, e.g. 2026-11-22T08:00:00+08:00",
                code="time_needs_offset",
                params={"field": name},
            )
    if end <= start:
        raise ApiError(422, "end_at must be after start_at", code="range_reversed")
    if end - start > MAX_TRACK_RANGE:
        raise ApiError(
            422,
            f"the range may span at most {MAX_TRACK_RANGE.days} days",
            code="range_too_long",
            params={"days": MAX_TRACK_RANGE.days},
        )
    rows, total = repo.track(conn, truck_id=truck_id, start=start, end=end, max_points=max_points)
    return Track(
        truck_id=truck_id,
        start_at=start,
        end_at=end,
        total_fixes=total,
        downsampled=total > len(rows),
        points=[TrackPoint(**{k: v for k, v in r.items() if k != "n"}) for r in rows],
    )


def _sse(event: str, data: object) -> str:
    return (
        f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"
    )


@router.get(
    "/positions/stream",
    summary="Live positions (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`event: snapshot` with every visible truck first, then "
            "`event: update` with the trucks that changed; `: keepalive` comments every "
            f"{KEEPALIVE_S:.0f} s; `event: logout` when the token stops being valid.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def position_stream(
    request: Request,
    principal: Anyone,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    scope = district_scope(principal, district_id)
    feed: service.LiveFeed = request.app.state.live_feed
    pool = request.app.state.pool
    token_hash = principal.token_hash

    def token_alive() -> bool:
        with pool.connection() as conn:
            return auth_service.token_alive(conn, token_hash=token_hash, now=now_utc())

    async def events() -> AsyncIterator[str]:
        sub = feed.subscribe(None if scope is None else frozenset(scope))
        checked = anyio.current_time()
        try:
            yield f"retry: 3000\n: subscribed at {now_utc().isoformat()}\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    item = ("", [])
                if item is None:  # the server is shutting down
                    return
                kind, batch = item
                if kind:
                    yield _sse(kind, {"at": now_utc().isoformat(), "trucks": batch})
                if anyio.current_time() - checked > RECHECK_TOKEN_S:
                    checked = anyio.current_time()
                    if not await anyio.to_thread.run_sync(token_alive):
                        yield _sse("logout", {"detail": "the token expired or was revoked"})
                        return
        finally:
            feed.unsubscribe(sub)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
