"""Alert rules: pure functions of the day's ledger and trucks, and of `now`.

Every rule returns the alerts whose condition holds at `now`, each with the moment
the condition became true (``condition_at``) and a ``key`` naming the crossing. A
rule says the same thing again on every evaluation while its condition holds; the
alert table is unique on ``key``, so each crossing is raised exactly once (and a
new crossing — a second silence of the same terminal — gets a new key).

Rules:

- ``missed``: a planned point not cleared by the end of its window (capped at the
  clearance deadline) plus a grace period; not raised while a visit could be hiding
  in the planned truck's silence (the ledger says ``unverifiable`` then).
- ``drive_by``: the planned truck, at its turn for the point, drove past it or
  stopped too briefly and went on — raised as soon as the truck is seen moving away.
- ``not_cleared_by_deadline``: the 日清 violation: a due point not cleared by the
  day's clearance deadline (higher severity).
- ``not_unloaded``: a truck that collected and then parked at a depot (or whose
  shift ended) without unloading at a transfer station.
- ``offline``: during a planned shift, no fix for longer than a threshold.
- ``stationary``: a stop at no known site longer than a threshold (a breakdown?);
  the lunch break is allowed for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from fleet.alerts.ledger import (
    DRIFT_MAX_S,
    DRIFT_REACH_M,
    MISSED_GRACE_S,
    DuePoint,
    PlannedStop,
    TruckDay,
    Verdict,
    is_clearing,
    is_unload,
    parked_after,
    visit_json,
)
from fleet.alerts.visits import Visit, median_margin_m
from routing.vocab import haversine_m

AlertKind = Literal[
    "missed", "drive_by", "not_cleared_by_deadline", "not_unloaded", "offline", "stationary"
]
ALERT_KINDS: tuple[AlertKind, ...] = (
    "missed",
    "drive_by",
    "not_cleared_by_deadline",
    "not_unloaded",
    "offline",
    "stationary",
)
# The stages of one incident at a point on a day, in the order they escalate: one
# alert per point and day, whose kind and severity follow the latest stage.
POINT_STAGES: tuple[AlertKind, ...] = ("drive_by", "missed", "not_cleared_by_deadline")
Severity = Literal["normal", "high"]
SEVERITY: dict[AlertKind, Severity] = {
    "missed": "normal",
    "drive_by": "normal",
    "not_cleared_by_deadline": "high",
    "not_unloaded": "high",
    "offline": "normal",
    "stationary": "normal",
}


@dataclass(frozen=True, slots=True)
class RuleParams:
    missed_grace_s: float = MISSED_GRACE_S
    deadline_grace_s: float = 0.0
    offline_after_s: float = 600.0
    stationary_after_s: float = 1200.0
    not_unloaded_grace_s: float = 3600.0
    # A truck that stops at a depot in its break window with points of its route still
    # ahead may be taking its lunch break there: it has parked for the day only once it
    # has stood there for the break's length and this much more.
    not_unloaded_break_slack_s: float = 600.0
    # A drive-by counts when the truck's last stop was at most this many planned
    # stops before the point (1: the stop just before it).
    drive_by_turn_stops: int = 1
    # ...or, once the truck has stopped at a later stop of its plan, this many.
    drive_by_skipped_stops: int = 3
    # ...and is confirmed once the truck is seen this long after the pass and this
    # far from the point (or stopped somewhere else). Farther than a loop round a
    # city block: trucks often pass a point, go round the block and come back to it
    # from the right side (one-way streets); 60 m raised false drive-bys then.
    drive_by_confirm_s: float = 20.0
    drive_by_confirm_m: float = 250.0
    # A stay's arrival is estimated up to this before its first stopped fix (the
    # midpoint of the silence before it, capped), so a stay at the next site that
    # begins right after a pass may carry an arrival a few seconds before the pass.
    stay_arrival_slack_s: float = 15.0


@dataclass(frozen=True, slots=True)
class AlertCandidate:
    kind: AlertKind
    key: str
    district_id: str
    service_date: date
    condition_at: datetime
    message: str
    point_id: str | None = None
    truck_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]

    @property
    def subject(self) -> str:
        return f"point:{self.point_id}" if self.point_id else f"truck:{self.truck_id}"


def _hm(at: datetime, tz: Any) -> str:
    return at.astimezone(tz).strftime("%H:%M")


def truck_names(days: Iterable[TruckDay]) -> dict[str, str]:
    """Truck id → its name in alert texts (`TruckDay.name`: the plate)."""
    return {d.truck_id: d.name for d in days}


def missed(
    verdicts: Iterable[Verdict], names: Mapping[str, str], now: datetime, p: RuleParams
) -> list[AlertCandidate]:
    out = []
    for v in verdicts:
        due = v.due
        if due.planned_truck_id is None or v.status not in ("missed", "partial"):
            continue
        at = due.verdict_at(p.missed_grace_s)
        if now < at:
            continue
        tz = due.window_end_at.tzinfo
        truck = names.get(due.planned_truck_id, due.planned_truck_id)
        what = (
            ("停留未倒桶" if v.reason == "no_lift" else "停留过短")
            if v.status == "partial"
            else ("车辆驶过未停" if v.reason == "drive_by" else "未到达")
        )
        out.append(
            AlertCandidate(
                kind="missed",
                key=f"missed|{due.service_date}|{due.point_id}",
                district_id=due.district_id,
                service_date=due.service_date,
                condition_at=at,
                point_id=due.point_id,
                truck_id=due.planned_truck_id,
                message=(
                    f"漏收：收集点 {due.point_id} 在作业时段结束（{_hm(min(due.window_end_at, due.deadline_at), tz)}）"
                    f"后仍未清运（{what}，计划车辆 {truck}）"
                ),
                details={"status": v.status, "reason": v.reason, **v.evidence},
            )
        )
    return out


def deadline(
    verdicts: Iterable[Verdict], names: Mapping[str, str], now: datetime, p: RuleParams
) -> list[AlertCandidate]:
    out = []
    for v in verdicts:
        due = v.due
        at = due.deadline_at + timedelta(seconds=p.deadline_grace_s)
        if now < at or v.status in ("cleared", "unverifiable") or v.coverage_hole:
            continue
        out.append(
            AlertCandidate(
                kind="not_cleared_by_deadline",
                key=f"deadline|{due.service_date}|{due.point_id}",
                district_id=due.district_id,
                service_date=due.service_date,
                condition_at=at,
                point_id=due.point_id,
                truck_id=due.planned_truck_id,
                message=(
                    f"日清未完成：收集点 {due.point_id} 截至 {_hm(due.deadline_at, due.deadline_at.tzinfo)} 未清运"
                    + (
                        f"（计划车辆 {names.get(due.planned_truck_id, due.planned_truck_id)}）"
                        if due.planned_truck_id
                        else "（未排入计划）"
                    )
                ),
                details={"status": v.status, "reason": v.reason},
            )
        )
    return out


def drive_by(
    days: Iterable[TruckDay],
    verdicts: Mapping[str, Verdict],
    now: datetime,
    p: RuleParams,
) -> list[AlertCandidate]:
    out = []
    for day in days:
        placed = [s for s in day.planned if s.site_id is not None]
        rank_of = {s.site_id: r for r, s in enumerate(placed) if s.kind == "point"}
        if not rank_of:
            continue
        timeline = day.progress()
        for v in day.visits:
            if v.site_kind != "point" or v.site_id is None or v.site_id not in rank_of:
                continue
            verdict = verdicts.get(v.site_id)
            if verdict is None or verdict.status == "cleared":
                continue
            if v.kind == "stay":
                if v.is_open or not v.end_seen or is_clearing(v, verdict.due.min_dwell_s):
                    continue
                happened = v.departed_at
            elif v.kind == "pass":
                happened = v.arrived_at
            else:
                continue
            # Its turn: the truck has just left the stop before it, and is clearly gone
            # on — or it has since stopped at a stop planned after this point, with at
            # most a few stops left out before it (points skipped in a row). A pass on
            # the way to an earlier stop, or later in the day, is not a drive-by.
            since, progress = max((t, r) for t, r in timeline if t < v.arrived_at)
            rank = rank_of[v.site_id]
            # The points between were driven past since: it is this point's turn too.
            # A stop at the point itself is an attempt at it even when the truck left
            # out a stop or two before it (as a pass is once it passed them all).
            turn = progress < rank and (
                rank - p.drive_by_turn_stops <= progress
                or (v.kind == "stay" and rank - p.drive_by_skipped_stops <= progress)
                or _passed_all(day, placed, progress, rank, since, v.arrived_at)
            )
            # The stops it may go on to: the next few of its route.
            ahead = {
                s.site_id: s.radius_m
                for s in placed[rank + 1 : rank + 2 + p.drive_by_skipped_stops]
            }
            at_turn = turn and _confirmed(day, v, happened, verdict.due, ahead, p)
            if not at_turn and not (
                rank - p.drive_by_skipped_stops <= progress < rank
                and _next_stop_rank(day, placed, progress, happened, verdict.due) > rank
            ):
                continue
            tz = day.tz
            what = (
                "驶过未停车"
                if v.kind == "pass"
                else f"停留 {v.dwell_s:.0f} 秒，不足 {verdict.due.min_dwell_s:.0f} 秒"
            )
            out.append(
                AlertCandidate(
                    kind="drive_by",
                    key=f"drive_by|{day.service_date}|{v.site_id}",
                    district_id=verdict.due.district_id,
                    service_date=day.service_date,
                    condition_at=happened,
                    point_id=v.site_id,
                    truck_id=day.truck_id,
                    message=f"未清运：车辆 {day.name} 于 {_hm(happened, tz)} 在收集点 {v.site_id} {what}",
                    details={"visit": visit_json(v), "stop_rank": rank, "progress_rank": progress},
                )
            )
    return out


def _passed_all(
    day: TruckDay,
    placed: Sequence[PlannedStop],
    progress: int,
    rank: int,
    since: datetime,
    until: datetime,
) -> bool:
    """Were all the planned stops between `progress` and `rank` points the truck drove
    past between `since` (it left the stop at `progress`) and `until`?"""
    between = placed[progress + 1 : rank]
    if any(s.kind != "point" for s in between):
        return False
    passed = {v.site_id for v in day.visits if v.kind == "pass" and since <= v.arrived_at < until}
    return all(s.site_id in passed for s in between)


def _next_stop_rank(
    day: TruckDay, placed: Sequence[PlannedStop], progress: int, after: datetime, due: DuePoint
) -> int:
    """Rank of the first planned stop the truck stayed at after `after` (-1: none yet),
    leaving out a stay that may still be the service of `due` with its fixes drifted
    (``_may_be_drifted_service``)."""
    for v in day.visits:
        if v.kind != "stay" or v.site_id is None or v.arrived_at <= after:
            continue
        for r in range(progress + 1, len(placed)):
            if placed[r].site_id == v.site_id and not _may_be_drifted_service(
                v, due, placed[r].radius_m
            ):
                return r
    return -1


def _confirmed(
    day: TruckDay,
    v: Visit,
    happened: datetime,
    due: DuePoint,
    ahead: Mapping[str | None, float],
    p: RuleParams,
) -> bool:
    """Has the truck clearly gone on after this pass / short stop? `ahead`: the stops it
    may go on to, with their fence radius."""
    slack = timedelta(seconds=p.stay_arrival_slack_s)
    for later in day.visits:
        if (
            later.kind == "stay"
            and later.departed_at > happened
            and later.arrived_at > happened - slack
            and later.site_id is not None
            and later.site_id != v.site_id
            and later.site_id in ahead
            and not _may_be_drifted_service(later, due, ahead[later.site_id])
        ):
            # It has stopped at one of its next stops since. A stop at a site it is not
            # due at may be this point's service with its fixes drifted into a
            # neighbour's fence: only leaving for 250 m says it has gone on.
            return True
    if day.last_fix_at is None or day.last_lat is None or day.last_lon is None:
        return False
    if (day.last_fix_at - happened).total_seconds() < p.drive_by_confirm_s:
        return False
    return haversine_m(day.last_lat, day.last_lon, due.lat, due.lon) >= max(
        p.drive_by_confirm_m, due.radius_m
    )


def _may_be_drifted_service(stay: Visit, due: DuePoint, radius_m: float) -> bool:
    """Could `stay`, under way in the fence (of radius `radius_m`) of a stop after the
    point, be the point's own service with its fixes drifted there? Yes while it lasts
    no longer than a drift does (``DRIFT_MAX_S``), lies within drift reach of the point,
    and in the outer half of its own fence: a truck serving that stop stands at it,
    drifted fixes land anywhere. When the drift ends, the fixes settle at the point and
    the stay becomes its service; if they settle where they are, the truck stood there.
    A young stay's median is uncertain (``median_margin_m``): P0020's, of 3 fixes 10 s
    into the stay, lay 97 m from the point its drifted fixes came from."""
    return (
        stay.is_open
        and (stay.departed_at - stay.arrived_at).total_seconds() <= DRIFT_MAX_S
        and stay.distance_m is not None
        and stay.distance_m > radius_m / 2
        and stay.lat is not None
        and stay.lon is not None
        and haversine_m(stay.lat, stay.lon, due.lat, due.lon)
        <= due.radius_m + DRIFT_REACH_M + median_margin_m(stay.fixes)
    )


def not_unloaded(
    days: Iterable[TruckDay],
    min_dwell_s: Mapping[str, float],
    station_min_dwell_s: Mapping[str, float],
    now: datetime,
    p: RuleParams,
) -> list[AlertCandidate]:
    out = []
    for day in days:
        collected = [
            v for v in day.visits if v.site_id and is_clearing(v, min_dwell_s.get(v.site_id, 0.0))
        ]
        if not collected:
            continue
        last = max(collected, key=lambda v: v.departed_at)
        if last.is_open:
            continue
        if any(
            is_unload(v, station_min_dwell_s) and v.arrived_at >= last.arrived_at
            for v in day.visits
        ):
            continue
        home = parked_after(day, last.departed_at)
        tz = day.tz
        if home is not None:
            at = home.arrived_at
            how = f"{_hm(at, tz)} 回到车场"
            if _may_be_break(day, home, collected):
                wait = timedelta(seconds=day.break_duration_s + p.not_unloaded_break_slack_s)
                still_there = home.is_open or (
                    day.last_fix_at is not None and day.last_fix_at <= home.departed_at
                )
                stood_until = now if still_there else home.departed_at
                if stood_until < home.arrived_at + wait:
                    continue  # a break: the truck went on, or it may yet
                at = home.arrived_at + wait
        else:
            at = day.shift_end_at + timedelta(seconds=p.not_unloaded_grace_s)
            stuck = any(v.kind == "stay" and v.is_open and v.site_kind is None for v in day.visits)
            quiet = day.quiet_since()
            silent = quiet is None or (now - quiet).total_seconds() > p.offline_after_s
            if now < at or stuck or silent:
                continue
            how = "收班时"
        out.append(
            AlertCandidate(
                kind="not_unloaded",
                key=f"not_unloaded|{day.service_date}|{day.truck_id}",
                district_id=day.district_id,
                service_date=day.service_date,
                condition_at=at,
                truck_id=day.truck_id,
                message=f"未卸载：车辆 {day.name} 最后一次收运（{last.site_id}，{_hm(last.departed_at, tz)}）后未到中转站卸载，{how}仍载有垃圾",
                details={
                    "last_collection": visit_json(last),
                    "parked": visit_json(home) if home else None,
                },
            )
        )
    return out


def _may_be_break(day: TruckDay, home: Visit, collected: Sequence[Visit]) -> bool:
    """A stop at a depot in the break window, with planned points still ahead of the
    last one collected: possibly the lunch break, not the end of the day."""
    if not day.break_start_at <= home.arrived_at <= day.break_end_at:
        return False
    done = {v.site_id for v in collected}
    route = [s for s in day.planned if s.kind == "point"]
    reached = max((s.seq for s in route if s.site_id in done), default=-1)
    return any(s.seq > reached and s.site_id not in done for s in route)


def _end_of_activity(day: TruckDay) -> datetime:
    """Shift end, or earlier when the truck is back at a depot for the day."""
    end = day.shift_end_at
    collected = [v for v in day.visits if v.kind == "stay" and v.site_kind in ("point", "station")]
    if collected:
        home = parked_after(day, max(v.departed_at for v in collected))
        if home is not None:
            end = min(end, home.arrived_at)
    return end


def offline(days: Iterable[TruckDay], now: datetime, p: RuleParams) -> list[AlertCandidate]:
    out = []
    limit = timedelta(seconds=p.offline_after_s)
    for day in days:
        if not day.has_route and day.first_fix_at is None:
            continue  # an idle truck that never reported: nothing was expected of it
        # The day starts when the route does (a plan may start after the shift opens).
        begin = day.starts_at
        end = min(_end_of_activity(day), now)
        silences: list[tuple[datetime, datetime]] = []  # (silent since, heard again or None)
        if day.first_fix_at is None:
            silences.append((begin, now))
        else:
            if day.first_fix_at > begin and day.has_route:
                silences.append((begin, day.first_fix_at))
            silences += [(g.start_at, g.end_at) for g in day.gaps]
            assert day.last_fix_at is not None
            silences.append((day.last_fix_at, now))
        tz = day.tz
        quiet = day.quiet_since()
        for since, until in silences:
            since = max(since, begin)
            at = since + limit
            if until is now and quiet is not None:
                at = max(quiet, begin) + limit  # heard recently: a slow clock, not silence
            if at > min(until, end):
                continue
            out.append(
                AlertCandidate(
                    kind="offline",
                    # The same silence, the same key, whatever zone its time was read in.
                    key=f"offline|{day.service_date}|{day.truck_id}|{since.astimezone(UTC).isoformat()}",
                    district_id=day.district_id,
                    service_date=day.service_date,
                    condition_at=at,
                    truck_id=day.truck_id,
                    message=f"终端离线：车辆 {day.name} 自 {_hm(since, tz)} 起超过 {p.offline_after_s / 60:.0f} 分钟无定位",
                    details={"silent_since": since.astimezone(tz).isoformat()},
                )
            )
    return out


def _planned_wait_s(day: TruckDay, stay: Visit, p: RuleParams) -> float:
    """How long the plan itself has the truck wait from the stay's arrival: until the
    planned arrival at the next stop of its route it has not reached (0 when it is
    behind its plan)."""
    placed = [s for s in day.planned if s.site_id is not None]
    reached = _reached_rank(day, placed, stay.arrived_at, p)
    if reached + 1 >= len(placed):
        return 0.0
    return max(0.0, (placed[reached + 1].arrival_at - stay.arrived_at).total_seconds())


def _reached_rank(day: TruckDay, placed: Sequence[PlannedStop], at: datetime, p: RuleParams) -> int:
    """How far along its route the truck had come by `at`: the rank of the last planned
    stop it stood at, or drove past. A stay in a site's fence reaches that site's next
    stop; a stay at no site reaches one of the next few stops it was due at when it
    stood beside it (within its fence + ``DRIFT_REACH_M``): a truck idling across the
    street from its point, or whose fixes drifted, was at that stop of its route. A pass
    at the very next stop reaches it too (the truck left it out and went on). From
    there, the wait the plan has after that stop (for a window, for the break) is the
    truck's."""
    rank = -1
    for v in day.visits:
        if v.arrived_at > at:
            break
        nxt = None
        if v.kind == "stay" and v.site_id is not None:
            nxt = next(
                (r for r in range(rank + 1, len(placed)) if placed[r].site_id == v.site_id), None
            )
        elif v.kind == "stay":
            nxt = _stop_beside(v, placed, rank, p)
        elif v.kind == "pass" and rank + 1 < len(placed) and placed[rank + 1].site_id == v.site_id:
            nxt = rank + 1
        if nxt is not None:
            rank = nxt
    return rank


def _stop_beside(
    stay: Visit, placed: Sequence[PlannedStop], rank: int, p: RuleParams
) -> int | None:
    """The rank of the first of the stops after `rank` (up to ``drive_by_skipped_stops``
    + 1 of them) that the stay stood beside, if any."""
    if stay.lat is None or stay.lon is None:
        return None
    for r in range(rank + 1, min(len(placed), rank + 2 + p.drive_by_skipped_stops)):
        s = placed[r]
        if (
            s.lat is not None
            and s.lon is not None
            and haversine_m(stay.lat, stay.lon, s.lat, s.lon) <= s.radius_m + DRIFT_REACH_M
        ):
            return r
    return None


def stationary(days: Iterable[TruckDay], now: datetime, p: RuleParams) -> list[AlertCandidate]:
    out = []
    for day in days:
        end = _end_of_activity(day)
        for v in day.visits:
            if v.kind != "stay" or v.site_kind is not None or v.arrived_at >= end:
                continue
            limit = p.stationary_after_s + _planned_wait_s(day, v, p)
            if v.arrived_at < day.break_end_at and v.departed_at > day.break_start_at:
                limit += day.break_duration_s
            at = v.arrived_at + timedelta(seconds=limit)
            if at > min(now, v.departed_at if not v.is_open else now):
                continue
            tz = day.tz
            out.append(
                AlertCandidate(
                    kind="stationary",
                    key=f"stationary|{day.service_date}|{day.truck_id}|{v.arrived_at.astimezone(tz):%H:%M}",
                    district_id=day.district_id,
                    service_date=day.service_date,
                    condition_at=at,
                    truck_id=day.truck_id,
                    message=f"异常停留：车辆 {day.name} 自 {_hm(v.arrived_at, tz)} 起在非作业点停留超过 {limit / 60:.0f} 分钟（疑似故障）",
                    details={"stay": visit_json(v)},
                )
            )
    return out


def evaluate(
    verdicts: Sequence[Verdict],
    days: Sequence[TruckDay],
    station_min_dwell_s: Mapping[str, float],
    now: datetime,
    p: RuleParams | None = None,
) -> list[AlertCandidate]:
    """Every rule, in one list (the order of the rules above)."""
    p = p or RuleParams()
    names = truck_names(days)
    by_point = {v.point_id: v for v in verdicts}
    min_dwell = {v.point_id: v.due.min_dwell_s for v in verdicts}
    return [
        *one_per_point(
            [
                *drive_by(days, by_point, now, p),
                *missed(verdicts, names, now, p),
                *deadline(verdicts, names, now, p),
            ]
        ),
        *not_unloaded(days, min_dwell, station_min_dwell_s, now, p),
        *offline(days, now, p),
        *stationary(days, now, p),
    ]


def stages_of(candidate: AlertCandidate) -> frozenset[str]:
    """The stages an alert has reached (just its kind for an alert of a truck)."""
    stages = candidate.details.get("stages")
    return frozenset(s["kind"] for s in stages) if stages else frozenset({candidate.kind})


def incident_key(service_date: date, point_id: str) -> str:
    return f"point|{service_date}|{point_id}"


def one_per_point(candidates: Iterable[AlertCandidate]) -> list[AlertCandidate]:
    """One incident per point and day: its stages (drive-by, missed, not cleared by the
    deadline) folded into one alert of the latest stage, whose evidence lists them all.
    The key names the point and day, not the stage, so a later stage escalates the
    alert already raised instead of raising another."""
    by_point: dict[tuple[date, str | None], list[AlertCandidate]] = {}
    for c in candidates:
        by_point.setdefault((c.service_date, c.point_id), []).append(c)
    out = []
    for (service_date, point_id), stages in by_point.items():
        stages.sort(key=lambda c: (POINT_STAGES.index(c.kind), c.condition_at))
        latest = stages[-1]
        earlier = "；".join(c.message for c in stages[:-1])
        out.append(
            AlertCandidate(
                kind=latest.kind,
                key=incident_key(service_date, point_id or ""),
                district_id=latest.district_id,
                service_date=service_date,
                condition_at=min(c.condition_at for c in stages),
                message=latest.message + (f"（此前：{earlier}）" if earlier else ""),
                point_id=point_id,
                truck_id=latest.truck_id,
                details={
                    **latest.details,
                    "stages": [
                        {
                            "kind": c.kind,
                            "condition_at": c.condition_at.isoformat(),
                            "message": c.message,
                        }
                        for c in stages
                    ],
                },
            )
        )
    return out
