"""`just bench`: run every benchmark and write its output into docs/performance.md.

The narrative of docs/performance.md stays as written; the section between the
``bench:begin`` / ``bench:end`` markers is replaced by this run's raw figures, each script's
output verbatim (every figure next to its reference, as the scripts print them).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# soak: `just soak`, minutes long, in docs/reliability.md; scale: `just scale`, docs/scaling.md
SKIP = {"report.py", "soak.py", "scale.py"}


def main() -> int:
    parts = [BEGIN, "", f"Latest `just bench`: {machine()}", ""]
    failed = 0
    for script in sorted((ROOT / "benchmarks").glob("[!_]*.py")):
        if script.name in SKIP:
            continue
        print(f"== {script.name}", flush=True)
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, check=False
        )
        took = time.monotonic() - start
        print(result.stdout, end="", flush=True)
        output = result.stdout.strip()
        if result.returncode != 0:
            failed += 1
            output += f"\n(exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]})"
        parts += [f"### {script.name} ({took:.0f} s)", "", "```", output, "```", ""]
    parts.append(END)
    text = DOC.read_text()
    section = "\n".join(parts)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Raw figures of the latest run\n\n" + section + "\n"
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
