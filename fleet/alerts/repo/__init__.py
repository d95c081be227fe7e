"""SQL for fleet/alerts, one module for each thing it reads and writes; no decisions are
made here. The names used outside the package are re-exported:

- ``district``: trucks, district time zones, sites with their fences, roads;
- ``tracks``: fixes, device events, the visits and silences detected on them;
- ``plans``: the day's plans — active district-days, due points, trucks' days;
- ``ledger``: the clearance ledger;
- ``alerts`` and ``cases``: alerts raised and escalated, the 一单四制 cases;
- ``webhooks``: the outbox and its signing secrets;
- ``reports``: the supervision reports' counts (日清率, cases closed on time, alerts by kind);
- ``worker_state``: watermarks, district leases and locks, when trucks were last heard.
"""

from fleet.alerts.repo.alerts import (
    RaisedAlert,
    escalate_alert,
    insert_alert,
    known_alert_keys,
    list_alerts,
)
from fleet.alerts.repo.cases import (
    ClearedPointCase,
    TruckCase,
    add_case_event,
    apply_transition,
    case_detail,
    list_cases,
    lock_case,
    open_case_for,
    open_point_cases_now_cleared,
    open_truck_cases,
    overdue_cases,
)
from fleet.alerts.repo.district import (
    TruckRef,
    district_timezones,
    read_in_zone,
    roads,
    sites,
    station_min_dwell,
    trucks,
)
from fleet.alerts.repo.ledger import (
    LedgerFilter,
    LedgerRow,
    drop_ledger_except,
    ledger_entries,
    ledger_json,
    ledger_row,
    ledger_version,
    status_counts,
    write_ledger,
)
from fleet.alerts.repo.plans import (
    active_district_dates,
    due_points,
    planned_stops,
    published_plan_id,
    truck_days,
)
from fleet.alerts.repo.tracks import (
    changed_truck_days,
    day_bounds,
    day_visits,
    events,
    fixes,
    refresh_truck_day,
    replace_detection,
    stays,
    trucks_with_data,
    window_start,
)
from fleet.alerts.repo.webhooks import (
    Delivery,
    enqueue_webhook,
    next_due_delivery,
    record_attempt,
    webhook_secret,
)
from fleet.alerts.repo.worker_state import (
    database_now,
    get_watermark,
    heard,
    lease_holders,
    lock_district,
    release_leases,
    save_heard,
    set_watermark,
    take_leases,
    try_lock_district,
)

__all__ = [
    "ClearedPointCase", "Delivery", "LedgerFilter", "LedgerRow", "RaisedAlert", "TruckCase", "TruckRef",
    "active_district_dates", "add_case_event", "apply_transition", "case_detail",
    "changed_truck_days", "database_now", "day_bounds", "day_visits", "district_timezones",
    "drop_ledger_except", "due_points", "enqueue_webhook", "escalate_alert", "events", "fixes",
    "get_watermark", "heard", "insert_alert", "known_alert_keys", "lease_holders",
    "ledger_entries", "ledger_json", "ledger_row", "ledger_version", "list_alerts", "list_cases", "lock_case", "lock_district",
    "next_due_delivery", "open_case_for", "open_point_cases_now_cleared", "open_truck_cases", "overdue_cases",
    "planned_stops", "published_plan_id", "read_in_zone", "record_attempt", "refresh_truck_day", "release_leases",
    "replace_detection", "roads", "save_heard", "set_watermark", "sites", "station_min_dwell",
    "status_counts", "stays", "take_leases", "truck_days", "trucks", "trucks_with_data", "try_lock_district",
    "webhook_secret", "window_start", "write_ledger",
]  # fmt: skip
