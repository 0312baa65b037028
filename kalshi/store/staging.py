"""The staged write, defined once: binary ``COPY`` of rows into a session temp table shaped
like the real one, then one ``INSERT ... SELECT`` from it. Every such statement is built
here (:func:`insert_new`, :func:`insert_skipping`, :func:`upsert_latest`,
:func:`insert_closing`): the batch writers (:mod:`kalshi.store.insert`) and the
deduplicator's production writes (through :class:`kalshi.store.session.Session`) both use
them.

JSONB columns travel as ``text`` (see :attr:`TableSpec.stage_types`) and are cast back here.
Blocking (sync psycopg); call from a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from kalshi.models.rows import Row
from kalshi.store.schema import TableSpec

__all__ = [
    "STAGE_TRUNCATE_ROWS",
    "UPSERT_STAMPS",
    "copy_rows",
    "ensure_stage",
    "fill_stage",
    "insert_closing",
    "insert_new",
    "insert_skipping",
    "source_columns",
    "stage_name",
    "target_columns",
    "upsert_latest",
]


STAGE_TRUNCATE_ROWS = 20_000
"""Rows a stage may take in (emptied by ``DELETE`` in between) before it is truncated."""


def stage_name(spec: TableSpec, prefix: str = "_stage_") -> sql.Identifier:
    """The session temp table ``<prefix><table>`` that rows of ``spec`` are copied into."""
    return sql.Identifier(f"{prefix}{spec.name}")


def target_columns(spec: TableSpec) -> sql.Composable:
    """``spec``'s column list, in :data:`~kalshi.models.rows.TABLE_COLUMNS` order."""
    return sql.SQL(", ").join(map(sql.Identifier, spec.columns))


def source_columns(
    spec: TableSpec, alias: str = "", columns: Sequence[str] | None = None
) -> sql.Composable:
    """The staged columns (all of ``spec``'s, or ``columns``) as the real table's types
    (``col::jsonb`` for JSON columns), optionally qualified by ``alias`` (``"s"`` gives
    ``s.col``)."""

    def column(name: str) -> sql.Composable:
        ref: sql.Composable = sql.Identifier(name)
        if alias:
            ref = sql.SQL("{}.{}").format(sql.Identifier(alias), ref)
        return sql.SQL("{}::jsonb").format(ref) if name in spec.json_columns else ref

    return sql.SQL(", ").join(column(c) for c in (spec.columns if columns is None else columns))


def ensure_stage(
    conn: psycopg.Connection[Any],
    spec: TableSpec,
    staged: dict[str, int],
    *,
    prefix: str = "_stage_",
    ordered: bool = False,
) -> None:
    """Create ``spec``'s temp table on ``conn`` unless ``staged`` (the tables this session
    already created, each with the rows it took in since it was last truncated) has it.
    ``ordered`` adds an ``_ord`` identity column that numbers rows in copy order (an
    upsert's last row wins).

    The table keeps its rows across commits (``ON COMMIT PRESERVE ROWS``) and
    :func:`fill_stage` empties it before each use: at every commit of a transaction that
    touched a temp table, PostgreSQL truncates *every* ``ON COMMIT DELETE ROWS`` table of
    the session, used or not (``PreCommit_on_commit_actions``), a file truncation each with
    its TOAST table and index; with one stage per table that cost several milliseconds a
    commit (measured, issue 19)."""
    if spec.name in staged:
        return
    columns: list[sql.Composable] = [
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
        for c, t in zip(spec.columns, spec.stage_types, strict=True)
    ]
    if ordered:
        columns.append(sql.SQL("_ord BIGINT GENERATED ALWAYS AS IDENTITY"))
    conn.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT PRESERVE ROWS").format(
            stage_name(spec, prefix), sql.SQL(", ").join(columns)
        )
    )
    staged[spec.name] = 0


def fill_stage(
    cur: psycopg.Cursor[Any],
    spec: TableSpec,
    rows: Sequence[Row],
    staged: dict[str, int],
    *,
    prefix: str = "_stage_",
    ordered: bool = False,
) -> sql.Identifier:
    """Make ``rows`` the only rows of ``spec``'s stage (created if ``staged`` lacks it, see
    :func:`ensure_stage`) and return its name; call inside the transaction that reads it.

    The stage is emptied by ``DELETE`` (a tenth of a ``TRUNCATE``'s cost for a batch), and
    by ``TRUNCATE`` once it took in :data:`STAGE_TRUNCATE_ROWS` rows since the last one: a
    temp table is never vacuumed, so deleted rows keep their space until it is truncated.
    Rows staged by a transaction that rolls back are gone with it. Raises psycopg errors.
    """
    ensure_stage(cur.connection, spec, staged, prefix=prefix, ordered=ordered)
    stage = stage_name(spec, prefix)
    if staged[spec.name] >= STAGE_TRUNCATE_ROWS:
        cur.execute(sql.SQL("TRUNCATE {}").format(stage))
        staged[spec.name] = 0
    else:
        cur.execute(sql.SQL("DELETE FROM {}").format(stage))
    copy_rows(cur, spec, rows, stage)
    staged[spec.name] += len(rows)
    return stage


def copy_rows(
    cur: psycopg.Cursor[Any],
    spec: TableSpec,
    rows: Sequence[Row],
    into: sql.Identifier | None = None,
) -> None:
    """Binary ``COPY`` of ``rows`` into ``into`` (the stage by default; the real table
    with its own types when ``into`` names it). Raises psycopg errors (e.g. a value that
    does not fit its column)."""
    real = into is not None and into == sql.Identifier(spec.name)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        into if into is not None else stage_name(spec), target_columns(spec)
    )
    with cur.copy(statement) as copy:
        copy.set_types(list(spec.types if real else spec.stage_types))
        for row in rows:
            copy.write_row(row)


def insert_new(
    spec: TableSpec, stage: sql.Identifier, *, in_key_order: bool = False
) -> sql.Composed:
    """``INSERT`` the rows staged in ``stage`` into ``spec``'s table, skipping every row whose
    key is stored (``ON CONFLICT <key> DO NOTHING``).

    ``in_key_order`` (the batch writers): rows go in key order, so two writers whose batches
    share keys (live trades and a REST backfill) take the unique index's locks in one order
    (no deadlock); on a serial table's ordered stage (``_ord``) the first row copied of a
    key is the one kept."""
    order: sql.Composable = sql.SQL("")
    if in_key_order:
        columns = (*spec.key, "_ord") if spec.serial else spec.key
        order = sql.SQL(" ORDER BY {}").format(sql.SQL(", ".join(columns)))
    return sql.SQL(
        "INSERT INTO {table} ({targets}) SELECT {sources} FROM {stage}{order} "
        "ON CONFLICT {key} DO NOTHING"
    ).format(
        table=sql.Identifier(spec.name),
        targets=target_columns(spec),
        sources=source_columns(spec),
        stage=stage,
        order=order,
        key=sql.SQL(spec.conflict),
    )


def insert_skipping(
    spec: TableSpec,
    stage: sql.Identifier,
    *,
    identity: Sequence[str] | None = None,
    time: str = "",
) -> sql.Composed:
    """``INSERT`` the rows staged in ``stage`` into ``spec``'s table, skipping every row
    already stored: by the table's key (:func:`insert_new`) when ``identity`` is ``None``;
    otherwise also by ``identity`` (columns that make two rows the same event; ``time`` is
    its leading time column, matched first through the index; ``""``: the identity holds
    no time, stored rows are matched by ticker), so rows with another key but the same
    event are dropped, and one row per event is kept.

    The stored rows are looked up row by row through the ``(ticker, time)`` index
    (``OFFSET 0`` keeps the ``NOT EXISTS`` a per-row subplan): as an anti-join the planner,
    which has no statistics for a stage and stale ones for a table that grows (a fresh
    production), hashed the whole stored table for every batch, a cost that grew with the
    table (issue 19: 1.5 ms a batch of 100 tickers at 5,000 stored, 0.3 ms through the
    index)."""
    if identity is None:
        return insert_new(spec, stage)
    name = sql.Identifier(spec.name)
    mine = source_columns(spec, "s", identity)
    theirs = source_columns(spec, "t", identity)
    return sql.SQL(
        "INSERT INTO {name} ({targets}) SELECT DISTINCT ON ({distinct}) {sources} "
        "FROM {stage} s WHERE NOT EXISTS (SELECT 1 FROM {name} t WHERE t.ticker = s.ticker "
        "{timed}AND ({theirs}) IS NOT DISTINCT FROM ({mine}) OFFSET 0) "
        "ORDER BY {distinct} ON CONFLICT DO NOTHING"
    ).format(
        name=name,
        targets=target_columns(spec),
        distinct=mine,
        sources=source_columns(spec, "s"),
        stage=stage,
        timed=sql.SQL("AND t.{time} = s.{time} ").format(time=sql.Identifier(time))
        if time
        else sql.SQL(""),
        theirs=theirs,
        mine=mine,
    )


UPSERT_STAMPS = ("updated_at", "gatherer_id")
"""The columns of an upserted row (``markets``) that say when and by whom a version was
written, not what it is: a version differing from the stored row only in these is the
stored version, and is not written again (:func:`upsert_latest`)."""


def upsert_latest(
    spec: TableSpec, stage: sql.Identifier, *, newest: str = "updated_at"
) -> sql.Composed:
    """``INSERT`` the rows staged in ``stage`` into ``spec``'s table (``markets``), one per
    key: the last by ``newest`` wins (``updated_at``; the batch writers pass ``_ord``, the
    last row copied, i.e. received), and never over a stored row with a newer
    ``updated_at``, nor over a stored row equal to it in every column but the key and
    :data:`UPSERT_STAMPS` (the same version again: a journal replayed again, a market
    re-listed after a restart; the row, its ``updated_at`` and its ``ingest_xid`` stay, so
    the deduplicator does not merge it again). ``RETURNING (xmax = 0)``: true for a row
    inserted, false for one updated (an updated row carries our transaction's id in
    ``xmax``); a row left as stored returns nothing."""
    name = sql.Identifier(spec.name)
    key = sql.SQL(", ").join(map(sql.Identifier, spec.key))
    versioned = [c for c in spec.columns if c not in spec.key]
    updates = sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in versioned
    )
    content = [sql.Identifier(c) for c in versioned if c not in UPSERT_STAMPS]
    return sql.SQL(
        "INSERT INTO {name} ({targets}) SELECT DISTINCT ON ({key}) {sources} FROM {stage} "
        "ORDER BY {key}, {newest} DESC "
        "ON CONFLICT {conflict} DO UPDATE SET {updates} "
        "WHERE {name}.updated_at <= EXCLUDED.updated_at "
        "AND ({stored}) IS DISTINCT FROM ({incoming}) RETURNING (xmax = 0)"
    ).format(
        name=name,
        targets=target_columns(spec),
        key=key,
        sources=source_columns(spec),
        stage=stage,
        newest=sql.Identifier(newest),
        conflict=sql.SQL(spec.conflict),
        updates=updates,
        stored=sql.SQL(", ").join(sql.SQL("{}.{}").format(name, c) for c in content),
        incoming=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(c) for c in content),
    )


def insert_closing(spec: TableSpec, stage: sql.Identifier) -> sql.Composed:
    """``INSERT`` the rows staged in ``stage`` into ``spec``'s table (``gaps``), one per key,
    where a copy of a stored open row (its :attr:`TableSpec.closes` column ``NULL``) with
    that column set closes it; a column already set is never changed, nor any other. One
    row per key (the closed copy first), in key order. ``RETURNING (xmax = 0)``: true for a
    row inserted, false for a stored one closed."""
    assert spec.closes is not None, spec.name
    order = sql.SQL(", ".join(spec.key))
    return sql.SQL(
        "INSERT INTO {table} ({targets}) SELECT DISTINCT ON ({order}) {sources} "
        "FROM {stage} ORDER BY {order}, {closes} NULLS LAST ON CONFLICT {key} "
        "DO UPDATE SET {closes} = EXCLUDED.{closes} "
        "WHERE {table}.{closes} IS NULL AND EXCLUDED.{closes} IS NOT NULL "
        "RETURNING (xmax = 0)"
    ).format(
        table=sql.Identifier(spec.name),
        targets=target_columns(spec),
        sources=source_columns(spec),
        stage=stage,
        order=order,
        key=sql.SQL(spec.conflict),
        closes=sql.Identifier(spec.closes),
    )
