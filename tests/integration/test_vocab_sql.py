"""The database's CHECK constraints list the same words as routing.vocab."""

from __future__ import annotations

import re

import psycopg
import pytest

from routing import vocab

# (table or domain, column) -> the word list its CHECK constraint must spell.
CHECKED = {
    ("waste_stream", "VALUE"): vocab.STREAMS,
    ("truck", "truck_type"): vocab.TRUCK_TYPES,
    ("road", "road_class"): vocab.ROAD_CLASSES,
    ("collection_point", "access_class"): vocab.ACCESS_CLASSES,
}

_CONSTRAINTS = """
SELECT coalesce(c.relname, t.typname), pg_get_constraintdef(k.oid)
FROM pg_constraint k
LEFT JOIN pg_class c ON c.oid = k.conrelid
LEFT JOIN pg_type t ON t.oid = k.contypid
WHERE k.contype = 'c' AND coalesce(c.relname, t.typname) = %s
"""


@pytest.mark.parametrize(("owner", "column"), sorted(CHECKED))
def test_check_constraint_spells_the_vocabulary(database_url: str, owner: str, column: str) -> None:
    """Each vocabulary's CHECK constraint accepts exactly the members routing.vocab names."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(_CONSTRAINTS, (owner,)).fetchall()
    listing = [d for _, d in rows if re.search(rf"\b{column}\b", d) and "'" in d]
    words = [set(re.findall(r"'([^']*)'", d)) for d in listing]
    assert len(words) == 1, f"{owner}.{column}: expected one listing CHECK, found {listing}"
    assert words[0] == set(CHECKED[owner, column])
