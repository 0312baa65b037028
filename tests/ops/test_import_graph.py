"""The package layout follows the data flow of issue 21: journal -> decode -> pipeline -> rows
-> store -> dedup -> export. No module imports from a stage to its right; the shapes that
flow between the stages (``kalshi.models``: messages and the row types, ``kalshi.book``,
``errors``, ``config``, ``clock``) import no stage; live gathering and replay share the
pipeline, not each other; only ``kalshi.store`` imports psycopg, and the stages after it
use its package face (``kalshi.store.__all__``), not its modules.

The ``rows`` stage is the hand-off of a frame's rows to the writers
(``kalshi.pipeline.sink``: ``Sink``, ``RowSink``); the row *types* are vocabulary
(``kalshi.models.rows``), since the pipeline that makes them and every stage after it name
them."""

from __future__ import annotations

import ast
from pathlib import Path

import kalshi

ROOT = Path(kalshi.__file__).parent

STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("journal", ("kalshi.journal",)),
    ("decode", ("kalshi.wire",)),
    ("pipeline", ("kalshi.pipeline",)),
    ("rows", ("kalshi.pipeline.sink",)),
    ("store", ("kalshi.store",)),
    ("dedup", ("kalshi.dedup",)),
    ("export", ("kalshi.dedup.export", "kalshi.dedup.parquet", "kalshi.dedup.targets")),
]
VOCABULARY = ("kalshi.models", "kalshi.book", "kalshi.errors", "kalshi.config", "kalshi.clock")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The kalshi modules ``name`` imports (``from pkg import mod`` resolves to the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("kalshi"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("kalshi"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return out


def _stage(module: str) -> int | None:
    """Index in :data:`STAGES` of the most specific stage that holds ``module``."""
    best: tuple[int, int] | None = None  # (prefix length, index)
    for index, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _third_party(path: Path) -> set[str]:
    """The top-level names of the packages outside kalshi that ``path`` imports."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.partition(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.partition(".")[0])
    return out - {"kalshi"}


def _edges() -> list[tuple[str, str]]:
    return [(name, dep) for name, path in MODULES.items() for dep in sorted(_imports(name, path))]


def test_the_stages_and_the_vocabulary_exist() -> None:
    assert [stage for stage, _ in STAGES] == [
        "journal",
        "decode",
        "pipeline",
        "rows",
        "store",
        "dedup",
        "export",
    ]
    for _, prefixes in STAGES:
        for prefix in prefixes:
            assert prefix in MODULES, prefix
    for prefix in VOCABULARY:
        assert prefix in MODULES, prefix


def test_no_module_imports_from_a_stage_to_its_right() -> None:
    wrong = []
    for name, dep in _edges():
        if MODULES[name].name == "__init__.py":
            continue  # a package's face re-exports its own modules
        mine, theirs = _stage(name), _stage(dep)
        if mine is not None and theirs is not None and theirs > mine:
            wrong.append(f"{name} ({STAGES[mine][0]}) imports {dep} ({STAGES[theirs][0]})")
    assert wrong == []


def test_the_vocabulary_imports_no_stage() -> None:
    wrong = [
        f"{name} imports {dep}"
        for name, dep in _edges()
        if _in(name, VOCABULARY) and _stage(dep) is not None
    ]
    assert wrong == []


def test_gathering_and_replay_share_the_pipeline_not_each_other() -> None:
    wrong = [
        f"{name} imports {dep}"
        for name, dep in _edges()
        if (_in(name, ("kalshi.replay",)) and _in(dep, ("kalshi.gather",)))
        or (_in(name, ("kalshi.gather",)) and _in(dep, ("kalshi.replay",)))
        or (_stage(name) is not None and _in(dep, ("kalshi.gather", "kalshi.replay")))
    ]
    assert wrong == []


def test_every_package_has_an_init_with_all() -> None:
    missing = []
    for directory in sorted(p for p in ROOT.rglob("*") if p.is_dir()):
        if not any(directory.glob("*.py")) or directory.name == "__pycache__":
            continue
        init = directory / "__init__.py"
        if not init.is_file() or "__all__" not in init.read_text():
            missing.append(str(directory.relative_to(ROOT.parent)))
    assert missing == []


def test_only_the_store_speaks_to_postgresql() -> None:
    """psycopg (connections, sessions, COPY, SQL composition, its errors) stays behind
    ``kalshi.store``: the deduplicator and the export read and write through its API."""
    wrong = [
        name
        for name, path in MODULES.items()
        if "psycopg" in _third_party(path) and not _in(name, ("kalshi.store",))
    ]
    assert wrong == []
    assert "psycopg" in _third_party(MODULES["kalshi.store.session"])


def test_the_stages_after_the_store_use_its_package_face() -> None:
    """The deduplicator and the export name ``kalshi.store`` (its ``__all__``: ``Session``,
    ``Database``, ``TABLES``, ...), never one of its modules."""
    wrong = [
        f"{name} imports {dep}"
        for name, dep in _edges()
        if _in(name, ("kalshi.dedup",)) and _in(dep, ("kalshi.store",)) and dep != "kalshi.store"
    ]
    assert wrong == []
