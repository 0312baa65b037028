"""Every option of every `kalshi` command says what it does in `--help`."""

from __future__ import annotations

from cyclopts import App

from kalshi.cli import app


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
