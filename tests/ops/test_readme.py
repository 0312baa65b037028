"""README.md's commands exist as written: every `kalshi` command and long option in the tour
and the command table, every `just` recipe, and the example script's options.

(The tour's outputs come from a real run; the commands behind them are tested where they
live: tests/dedup/test_dedup_cli.py, tests/replay/test_cli.py, tests/ops/test_duckdb_example.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
RECIPES = set(re.findall(r"^([a-z][a-z-]*)(?: [^:]*)?:", (ROOT / "justfile").read_text(), re.M))
# `just <recipe>` -> the kalshi command its arguments go to
JUST_COMMAND = {"run-dedup": "dedup", "run-gatherer": "gather", "demo": "demo"}


@cache
def _help(*command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "kalshi", *command, "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _commands() -> list[str]:
    """Every command line the README shows: `$ ...` lines and the table's first column."""
    lines = [m.group(1) for m in re.finditer(r"^\$ (.+)$", README, re.M)]
    lines += [m.group(1) for m in re.finditer(r"^\| `((?:kalshi|just) [^`]+)` \|", README, re.M)]
    lines += [m.group(1) for m in re.finditer(r"`((?:kalshi|just) [a-z][^`]*)`", README)]
    return [line.split("  #")[0].strip() for line in lines]


def _options(line: str) -> list[str]:
    return re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line)


def test_every_kalshi_command_and_option_in_the_readme_exists() -> None:
    seen = set()
    for line in _commands():
        words = line.split()
        if words[0] == "kalshi" and len(words) > 1 and not words[1].startswith("-"):
            command = words[1]
        elif words[0] == "just" and len(words) > 1:
            assert words[1] in RECIPES, line
            command = JUST_COMMAND.get(words[1], "")
            if not command:
                continue
        else:
            continue
        text = _help(command)
        for option in _options(line):
            assert option in text, f"{line}: {option} is not an option of kalshi {command}"
        seen.add(command)
    assert {"demo", "snapshot", "dedup", "export", "replay", "gather", "status", "sim"} <= seen


def test_the_command_table_lists_every_command() -> None:
    listed = set(re.findall(r"^\| `kalshi ([a-z]+)", README, re.M))
    top = _help()
    commands = set(re.findall(r"^│ ([a-z]+) ", top, re.M))
    assert commands, top
    assert commands <= listed | {"--help", "--version"}, commands - listed


def test_the_example_script_options_exist() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples/duckdb_query.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in _commands():
        if "examples/duckdb_query.py" in line:
            for option in _options(line):
                assert option in done.stdout, line


def test_the_gold_replay_output_is_the_real_one() -> None:
    """Outside tester pbreak8 F11: the README's gold replay block had an old session line
    (another connection id, a shortened path, no `ended:`). Its command is run from the
    repository root and its stderr compared line for line."""
    block = re.search(r"^\$ (kalshi replay tests/data/kalshi-gold15m/\S+ [^\n]*)\n(.*?)\n```",
                      README, re.M | re.S)  # fmt: skip
    assert block is not None
    command, shown = block.group(1), block.group(2)
    assert command.endswith(" >/dev/null")
    done = subprocess.run(
        [sys.executable, "-m", "kalshi", *command.removesuffix(" >/dev/null").split()[1:]],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == shown.splitlines()
