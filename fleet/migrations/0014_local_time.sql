-- An instant as ISO 8601 text in a time zone, with that zone's offset at the instant
-- (2026-03-02T06:10:00+08:00; fractions of a second only when there are some): how the
-- API gives a district's times when it builds JSON in SQL. NULL in, NULL out.
CREATE FUNCTION iso_local(ts timestamptz, zone text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT AS $$
    SELECT to_char(l, 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM l)::bigint % 1000000 <> 0
                THEN to_char(l, '.US') ELSE '' END
        || CASE WHEN o < 0 THEN '-' ELSE '+' END
        || lpad((abs(o) / 3600)::text, 2, '0') || ':' || lpad((abs(o) % 3600 / 60)::text, 2, '0')
      FROM (SELECT ts AT TIME ZONE zone AS l,
                   extract(epoch FROM (ts AT TIME ZONE zone) - (ts AT TIME ZONE 'UTC'))::int AS o) s
$$;
