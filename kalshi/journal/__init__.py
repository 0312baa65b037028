"""The raw frame journal: every frame in and out, byte-exact, with in-band markers.

:class:`JournalWriter` appends (buffered, from the event loop) and flushes in a thread;
:func:`read_journal` reads files, directories or ``s3://`` prefixes back, tolerating damage.
See ``docs/journal.md``.
"""

from kalshi.journal.format import JournalProblem, JournalRecord
from kalshi.journal.reader import ConnectionInfo, connections, journal_files, read_journal
from kalshi.journal.writer import JournalWriter

__all__ = [
    "ConnectionInfo",
    "JournalProblem",
    "JournalRecord",
    "JournalWriter",
    "connections",
    "journal_files",
    "read_journal",
]
