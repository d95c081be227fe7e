"""The shape every domain table of the catalogue shares (depots, stations, points,
trucks): list with filters and a total, get, insert, update, (de)activate — always
within the given districts. Each domain's repo.py describes its table with a `Table`
and keeps any SQL of its own next to it; the HTTP layer (`fleet.web.crud`) adds the
access rules and answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    # Writable columns besides the key and district_id.
    columns: tuple[str, ...]
    # Columns read with a cast (domain types psycopg does not know).
    casts: dict[str, str] = field(default_factory=dict)
    # Columns searched by `q` (case-insensitive substring).
    search: tuple[str, ...] = ("name",)
    # Equality filters: query parameter -> column.
    filters: tuple[str, ...] = ()
    # Filters on array columns: query parameter -> array column that must contain it.
    contains: dict[str, str] = field(default_factory=dict)

    def _select(self) -> sql.Composed:
        exprs: list[sql.Composable] = [sql.Identifier(self.key), sql.Identifier("district_id")]
        for column in (*self.columns, "active", "updated_at"):
            if column in self.casts:
                exprs.append(
                    sql.SQL("{}::{} AS {}").format(
                        sql.Identifier(column), sql.SQL(self.casts[column]), sql.Identifier(column)
                    )
                )
            else:
                exprs.append(sql.Identifier(column))
        return sql.SQL(", ").join(exprs)

    def page(
        self,
        conn: psycopg.Connection,
        *,
        districts: list[str] | None,
        active: bool | None,
        q: str | None,
        filters: dict[str, Any],
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        where: list[sql.Composable] = [
            sql.SQL("(%(districts)s::text[] IS NULL OR district_id = ANY(%(districts)s))")
        ]
        params: dict[str, Any] = {"districts": districts, "limit": limit, "offset": offset}
        if active is not None:
            where.append(sql.SQL("active = %(active)s"))
            params["active"] = active
        if q:
            params["q"] = (
                "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            where.append(
                sql.SQL("({})").format(
                    sql.SQL(" OR ").join(
                        sql.SQL("{}::text ILIKE %(q)s").format(sql.Identifier(c))
                        for c in (self.key, *self.search)
                    )
                )
            )
        for name, value in filters.items():
            if value is None:
                continue
            params[f"f_{name}"] = value
            if name in self.contains:
                where.append(
                    sql.SQL("%({})s = ANY({}::text[])").format(
                        sql.SQL(f"f_{name}"), sql.Identifier(self.contains[name])
                    )
                )
            else:
                column = name
                if column not in self.filters:
                    raise ValueError(f"{self.name} has no filter {name}")
                cast = self.casts.get(column)
                target = sql.Identifier(column)
                where.append(
                    sql.SQL("{}{} = %({})s").format(
                        target, sql.SQL(f"::{cast}" if cast else ""), sql.SQL(f"f_{name}")
                    )
                )
        query = sql.SQL(
            "SELECT {cols}, count(*) OVER () AS total__ FROM {table} WHERE {where} "
            "ORDER BY {key} LIMIT %(limit)s OFFSET %(offset)s"
        ).format(
            cols=self._select(),
            table=sql.Identifier(self.name),
            where=sql.SQL(" AND ").join(where),
            key=sql.Identifier(self.key),
        )
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query, params).fetchall()
        if rows:
            total = int(rows[0]["total__"])
        elif offset:
            count = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                sql.Identifier(self.name), sql.SQL(" AND ").join(where)
            )
            found = conn.execute(count, params).fetchone()
            total = int(found[0]) if found else 0
        else:
            total = 0
        for row in rows:
            del row["total__"]
        return rows, total

    def get(
        self, conn: psycopg.Connection, *, key: str, districts: list[str] | None
    ) -> dict[str, Any] | None:
        query = sql.SQL(
            "SELECT {cols} FROM {table} WHERE {key} = %(key)s "
            "AND (%(districts)s::text[] IS NULL OR district_id = ANY(%(districts)s))"
        ).format(cols=self._select(), table=sql.Identifier(self.name), key=sql.Identifier(self.key))
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, {"key": key, "districts": districts}).fetchone()

    def insert(self, conn: psycopg.Connection, *, values: dict[str, Any]) -> dict[str, Any]:
        columns = [self.key, "district_id", *(c for c in self.columns if c in values)]
        query = sql.SQL("INSERT INTO {table} ({cols}) VALUES ({vals}) RETURNING {ret}").format(
            table=sql.Identifier(self.name),
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            vals=sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
            ret=self._select(),
        )
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query, values).fetchone()
        assert row is not None
        return row

    def update(
        self,
        conn: psycopg.Connection,
        *,
        key: str,
        changes: dict[str, Any],
        districts: list[str] | None,
    ) -> dict[str, Any] | None:
        allowed = (*self.columns, "active")
        sets: list[sql.Composable] = [
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(f"v_{c}"))
            for c in changes
            if c in allowed
        ]
        sets.append(sql.SQL("updated_at = now()"))
        query = sql.SQL(
            "UPDATE {table} SET {sets} WHERE {key} = %(key)s "
            "AND (%(districts)s::text[] IS NULL OR district_id = ANY(%(districts)s)) "
            "RETURNING {ret}"
        ).format(
            table=sql.Identifier(self.name),
            sets=sql.SQL(", ").join(sets),
            key=sql.Identifier(self.key),
            ret=self._select(),
        )
        params = {f"v_{c}": v for c, v in changes.items() if c in allowed}
        params.update(key=key, districts=districts)
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchone()
