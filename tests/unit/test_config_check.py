"""`kalshi config check FILE...`: any of our configs checked without running anything
(outside tester F9: only a gatherer config could be checked, through `kalshi db status`,
and a deduplicator config given to it said `gatherers: unknown key`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kalshi.auth import generate_rsa_key_pem


def _kalshi(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kalshi", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


GATHERER = """\
kalshi: {api_key: k1, api_secret: key.pem}
gatherer_id: g1
timescaledb: {url: "postgresql://writer@db/g1"}
"""
DEDUP = """\
gatherers:
  - {id: g1, timescaledb: "postgresql://writer@db/g1"}
production: {url: "postgresql://writer@db/prod"}
sync: {poll_interval: 1s}
"""


def test_each_kind_is_recognised_and_checked_without_running(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_bytes(generate_rsa_key_pem()[0])
    (tmp_path / "g.yaml").write_text(GATHERER)
    (tmp_path / "d.yaml").write_text(DEDUP)
    result = _kalshi("config", "check", "g.yaml", "d.yaml", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "g.yaml: ok (a gatherer config)",
        "d.yaml: ok (a deduplicator config)",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "d.yaml",
        "g.yaml",
        "key.pem",
    ]


def test_every_problem_of_each_file_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(GATHERER + "http: {port: 70000}\n")
    (tmp_path / "nokey.yaml").write_text(GATHERER)  # key.pem is not there
    (tmp_path / "d.yaml").write_text("gatherers: []\nsync: {poll_interval: 0s}\n")
    (tmp_path / "ok.yaml").write_text(DEDUP)
    (tmp_path / "shared.yaml").write_text("logging: {level: debug}\n")  # either kind's keys
    files = ("g.yaml", "nokey.yaml", "d.yaml", "ok.yaml", "shared.yaml")
    result = _kalshi("config", "check", *files, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "ok.yaml: ok (a deduplicator config)\n")
    assert result.stderr.splitlines() == [
        "config error: g.yaml: http.port: expected a port 0-65535 (0 disables), got 70000",
        "config error: nokey.yaml: kalshi.api_secret: cannot read private key file key.pem:"
        " No such file or directory",
        "config error: d.yaml: sync.poll_interval: expected a duration > 0, got 0.0",
        # checked as a gatherer's, the default when only shared keys tell nothing
        "config error: shared.yaml: kalshi.api_secret: no private key configured"
        " (kalshi.api_secret / KALSHI_API_SECRET)",
    ]
    # what dedup needs besides types and ranges, once those pass
    (tmp_path / "d.yaml").write_text("gatherers: []\n")
    result = _kalshi("config", "check", "d.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (
        2,
        "",
        [
            "config error: d.yaml: production.url: the production database URL is required",
            "config error: d.yaml: gatherers: at least one gatherer database is required",
        ],
    )


def test_a_config_given_to_the_other_kind_of_command_says_so(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(GATHERER)
    (tmp_path / "d.yaml").write_text(DEDUP)
    cases = [
        (
            ("db", "status", "--config", "d.yaml"),
            "config error: d.yaml: a deduplicator config (its keys gatherers, production,"
            " sync), not a gatherer config; `kalshi config check d.yaml` checks either kind\n",
        ),
        (
            ("dedup", "--once", "--config", "g.yaml"),
            "config error: g.yaml: a gatherer config (its keys gatherer_id, kalshi,"
            " timescaledb), not a deduplicator config; `kalshi config check g.yaml` checks"
            " either kind\n",
        ),
        (
            ("config", "check", "--kind", "dedup", "g.yaml"),
            "config error: g.yaml: a gatherer config (its keys gatherer_id, kalshi,"
            " timescaledb), not a deduplicator config; `kalshi config check g.yaml` checks"
            " either kind\n",
        ),
    ]
    for args, line in cases:
        result = _kalshi(*args, cwd=tmp_path)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", line), args


def test_a_yaml_error_names_where_yaml_found_it_and_why(tmp_path: Path) -> None:
    # tester F3: an unclosed [ on line 2 said only "line 3 not valid YAML"
    (tmp_path / "bad.yaml").write_text("kalshi:\n  rest_url: [unclosed\n")
    (tmp_path / "indent.yaml").write_text("a: 1\n  b: 2\n")
    result = _kalshi("config", "check", "bad.yaml", "indent.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (
        2,
        "",
        [
            "config error: bad.yaml: line 3, column 1: not valid YAML: expected ',' or ']',"
            " but got '<stream end>' (while parsing a flow sequence at line 2, column 13)",
            "config error: indent.yaml: line 2, column 4: not valid YAML: mapping values are"
            " not allowed here",
        ],
    )
