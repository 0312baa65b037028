"""The long soak for humans: `python benchmarks/soak.py [--duration 600]` (= `kalshi soak`).
The short one runs in `just test` (tests/proof/test_soak.py)."""

from __future__ import annotations

import sys

from kalshi.cli import main

if __name__ == "__main__":
    sys.argv = ["kalshi", "soak", *sys.argv[1:]]
    main()
