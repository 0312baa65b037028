"""The live screen: pure state -> rich renderable, plus one Live refresh task.

* :class:`TuiState` accumulates health documents (``observe``) into rates and history.
* :func:`render` draws a state; :func:`summary_line` is its one-line log form.
* :func:`run_tui` refreshes a ``Live`` screen (or prints log lines off a terminal).
* :func:`open_remote` reads a running service's ``/health`` and ``/metrics``.
"""

from kalshi.tui.live import HealthSource, MetricsSource, run_tui
from kalshi.tui.remote import Remote, open_remote
from kalshi.tui.render import render
from kalshi.tui.state import TuiState, parse_metrics
from kalshi.tui.summary import summary_line

__all__ = [
    "HealthSource",
    "MetricsSource",
    "Remote",
    "TuiState",
    "open_remote",
    "parse_metrics",
    "render",
    "run_tui",
    "summary_line",
]
