"""Every option of every `kalshi` command says what it does in `--help`."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

from cyclopts import App

from kalshi.cli import app
from kalshi.cli.commands import COMMANDS


def _undocumented(node: App, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name in node:
        if name.startswith("-"):  # --help, --version
            continue
        sub = node[name]
        if sub.default_command is not None:
            for argument in sub.assemble_argument_collection():
                if argument.show and not argument.parameter.help:
                    found.append((*path, name, *argument.names))
        found += _undocumented(sub, (*path, name))
    return found


def test_every_shown_option_has_a_help_text() -> None:
    assert _undocumented(app, ()) == []


def test_db_reset_yes_is_described_and_has_no_negative() -> None:
    (yes,) = [a for a in app["db"]["reset"].assemble_argument_collection() if "--yes" in a.names]
    assert (yes.names, yes.parameter.help) == (
        ("--yes",),
        "Drop without asking (for scripts: no terminal).",
    )


def test_each_lazy_command_has_its_docstrings_first_paragraph_as_help() -> None:
    """Commands are registered by import path (`kalshi status` no longer imports every
    command's module: outside tester F6), so their one-line help is written beside the
    path; it must be what the command's own docstring (or its App's help) says."""
    for path, name, text in COMMANDS:
        module, attribute = path.split(":")
        target = getattr(importlib.import_module(module), attribute)
        if isinstance(target, App):
            own = target.help
        else:
            doc = inspect.getdoc(target)
            assert doc is not None
            own = doc.split("\n\n")[0].replace("\n", " ")
        assert (name, text) == (name, own)
        assert app[name].help == text


def test_status_imports_no_other_command() -> None:
    """`kalshi status --help` loads the CLI and the status command only: no store, no
    gatherer, no pyarrow or boto3 (what made it slow, outside tester F6)."""
    code = (
        "import sys\n"
        "from kalshi.cli import app\n"
        "app(['status', '--help'], exit_on_error=False, result_action='return_value')\n"
        "heavy = ('kalshi.store', 'kalshi.gather', 'kalshi.dedup', 'pyarrow', 'boto3',"
        " 'psycopg', 'kalshi.cli.gather', 'kalshi.cli.dedup')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert shown.splitlines()[-1] == "[]"
