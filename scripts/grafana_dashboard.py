"""Writes etc/grafana/dashboards/kalshi.json: `python scripts/grafana_dashboard.py`.

The dashboard is generated so that its layout stays regular and every query is in one
readable list; tests/ops/test_grafana.py checks each query names a metric the code exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "etc/grafana/dashboards/kalshi.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"

# (title, unit, [(legend, expr)], kind) per panel, grouped by row.
ROWS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]], str]]]] = [
    (
        "Ingest (gatherers)",
        [
            (
                "Messages/s per channel",
                "ops",
                [("{{channel}}", f"sum by (channel) (rate(kalshi_ws_messages_total[{RATE}]))")],
                "timeseries",
            ),
            (
                "Bytes/s per channel",
                "Bps",
                [("{{channel}}", f"sum by (channel) (rate(kalshi_ws_bytes_total[{RATE}]))")],
                "timeseries",
            ),
            (
                "End-to-end latency (exchange ts -> writer)",
                "s",
                [
                    (
                        f"p{q}",
                        f"histogram_quantile(0.{q}, sum by (le) "
                        f"(rate(kalshi_latency_seconds_bucket[{RATE}])))",
                    )
                    for q in ("5", "9", "99")
                ],
                "timeseries",
            ),
            (
                "WebSocket connections by state",
                "short",
                [("{{state}}", "sum by (state) (kalshi_ws_connections)")],
                "timeseries",
            ),
            (
                "Reconnects",
                "short",
                [
                    (
                        "{{instance}}",
                        f"sum by (instance) (increase(kalshi_ws_reconnects_total[{RATE}]))",
                    )
                ],
                "timeseries",
            ),
            (
                "Gaps and re-snapshots",
                "short",
                [
                    ("gap {{kind}}", f"sum by (kind) (increase(kalshi_gaps_total[{RATE}]))"),
                    (
                        "resnapshot {{reason}}",
                        f"sum by (reason) (increase(kalshi_resnapshots_total[{RATE}]))",
                    ),
                    (
                        "snapshot mismatch",
                        f"sum(increase(kalshi_snapshot_mismatches_total[{RATE}]))",
                    ),
                    (
                        "backfilled trades",
                        f"sum(increase(kalshi_backfilled_trades_total[{RATE}]))",
                    ),
                ],
                "timeseries",
            ),
            (
                "Markets tracked by status",
                "short",
                [("{{status}}", "sum by (status) (kalshi_markets_tracked)")],
                "timeseries",
            ),
            (
                "Decode errors and REST requests",
                "short",
                [
                    (
                        "decode {{kind}}",
                        f"sum by (kind) (increase(kalshi_decode_errors_total[{RATE}]))",
                    ),
                    (
                        "{{endpoint}} {{status}}",
                        f"sum by (endpoint, status) (increase(kalshi_rest_requests_total[{RATE}]))",
                    ),
                ],
                "timeseries",
            ),
        ],
    ),
    (
        "Store (database, spool, journal)",
        [
            (
                "Rows/s per table",
                "rowsps",
                [
                    (
                        "{{table}}",
                        f"sum by (table) (rate(kalshi_store_rows_written_total[{RATE}]))",
                    ),
                    (
                        "{{table}} duplicate",
                        f"sum by (table) (rate(kalshi_store_rows_duplicate_total[{RATE}]))",
                    ),
                ],
                "timeseries",
            ),
            (
                "Rows waiting: memory and spool",
                "short",
                [
                    ("memory {{table}}", "sum by (table) (kalshi_store_queue_rows)"),
                    ("spool {{table}}", "sum by (table) (kalshi_store_spool_rows)"),
                ],
                "timeseries",
            ),
            (
                "Spool size",
                "bytes",
                [("{{table}}", "sum by (table) (kalshi_store_spool_bytes)")],
                "timeseries",
            ),
            (
                "Database up",
                "short",
                [("{{instance}}", "min by (instance) (kalshi_store_db_up)")],
                "stat",
            ),
            (
                "Batch write time p99, errors, dead letters",
                "s",
                [
                    (
                        "p99 {{table}}",
                        "histogram_quantile(0.99, sum by (le, table) "
                        f"(rate(kalshi_store_flush_seconds_bucket[{RATE}])))",
                    ),
                    (
                        "errors {{table}}",
                        f"sum by (table) (increase(kalshi_store_flush_errors_total[{RATE}]))",
                    ),
                    (
                        "dead letters {{table}}",
                        f"sum by (table) (increase(kalshi_store_dead_letters_total[{RATE}]))",
                    ),
                    (
                        "spilled batches {{table}}",
                        f"sum by (table) (increase(kalshi_store_spooled_batches_total[{RATE}]))",
                    ),
                ],
                "timeseries",
            ),
            (
                "Journal",
                "Bps",
                [
                    ("written", f"sum(rate(kalshi_journal_bytes_written_total[{RATE}]))"),
                    ("buffered", "sum(kalshi_journal_buffer_bytes)"),
                    (
                        "records under pressure",
                        f"sum(rate(kalshi_journal_pressure_records_total[{RATE}]))",
                    ),
                    (
                        "upload failures",
                        f"sum(increase(kalshi_journal_upload_failures_total[{RATE}]))",
                    ),
                ],
                "timeseries",
            ),
        ],
    ),
    (
        "Deduplicator and export",
        [
            (
                "Dedup lag per gatherer",
                "s",
                [("{{gatherer}}", "max by (gatherer) (kalshi_dedup_lag_seconds)")],
                "timeseries",
            ),
            (
                "Rows merged into production/s",
                "rowsps",
                [
                    (
                        "{{table}}",
                        f"sum by (table) (rate(kalshi_dedup_rows_merged_total[{RATE}]))",
                    ),
                    (
                        "{{table}} duplicate dropped",
                        f"sum by (table) (rate(kalshi_dedup_duplicates_dropped_total[{RATE}]))",
                    ),
                ],
                "timeseries",
            ),
            (
                "Export throughput",
                "Bps",
                [
                    ("{{table}}", f"sum by (table) (rate(kalshi_export_bytes_total[{RATE}]))"),
                    (
                        "windows {{table}}",
                        f"sum by (table) (increase(kalshi_export_windows_total[{RATE}]))",
                    ),
                    ("failures", f"sum(increase(kalshi_export_failures_total[{RATE}]))"),
                ],
                "timeseries",
            ),
            (
                "Gatherer databases up (dedup), holes, source switches",
                "short",
                [
                    ("up {{gatherer}}", "min by (gatherer) (kalshi_dedup_gatherer_up)"),
                    ("holes", f"sum(increase(kalshi_dedup_holes_total[{RATE}]))"),
                    (
                        "source switches",
                        f"sum(increase(kalshi_dedup_source_switches_total[{RATE}]))",
                    ),
                ],
                "timeseries",
            ),
            (
                "Scrape targets up",
                "short",
                [("{{job}} {{instance}}", 'up{job=~"gatherer|dedup"}')],
                "stat",
            ),
        ],
    ),
]


def panel(
    panel_id: int, title: str, unit: str, targets: list[tuple[str, str]], kind: str, x: int, y: int
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (legend, expr) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        for index, (title, unit, targets, kind) in enumerate(row_panels):
            x = 12 * (index % 2)
            panels.append(panel(next_id, title, unit, targets, kind, x, y))
            next_id += 1
            if x:
                y += 8
        if len(row_panels) % 2:
            y += 8
    return {
        "uid": "kalshi-overview",
        "title": "kalshi",
        "tags": ["kalshi"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")
