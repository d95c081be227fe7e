"""iso_local (0014): an instant as ISO 8601 text in a zone, as Python's isoformat gives it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

ZONES = ["Asia/Shanghai", "Asia/Urumqi", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]


def test_iso_local_matches_python_isoformat_over_zones_and_fractions(database_url: str) -> None:
    """Random instants (whole seconds and not), zones with negative, half-hour and DST offsets."""
    with psycopg.connect(database_url) as conn:

        @settings(max_examples=300, deadline=None)
        @given(
            st.integers(min_value=0, max_value=40 * 365 * 86400),
            st.sampled_from([0, 1, 500_000, 999_999]),
            st.sampled_from(ZONES),
        )
        def check(seconds: int, micro: int, zone: str) -> None:
            ts = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micro)
            row = conn.execute("SELECT iso_local(%s, %s)", (ts, zone)).fetchone()
            assert row is not None and row[0] == ts.astimezone(ZoneInfo(zone)).isoformat()

        check()
        assert conn.execute("SELECT iso_local(NULL, 'Asia/Shanghai')").fetchone() == (None,)
