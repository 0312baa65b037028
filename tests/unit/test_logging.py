"""Logging as the commands configure it: our own loggers at the configured level, every
other library at warnings and above, credentials redacted whoever logs them (outside
tester F3: ``LOG_LEVEL=debug`` put websockets' signed request headers in the log)."""

from __future__ import annotations

import subprocess
import sys

from kalshi.cli.app import redact

SCRIPT = """
import logging
from kalshi.cli.app import configure_logging
from kalshi.config import LoggingConfig
configure_logging(LoggingConfig(level='debug', format='text'))
for name in ('websockets.client', 'httpx', 'httpcore.http11', 'botocore.hooks', 'urllib3'):
    logging.getLogger(name).debug('> KALSHI-ACCESS-KEY: mykey')
    logging.getLogger(name).info('HTTP Request: GET http://h/ok')
logging.getLogger('websockets.client').warning('> KALSHI-ACCESS-SIGNATURE: Ra1sSvn+/=x')
logging.getLogger('kalshi.net.rest').debug('GET %s', 'postgresql://writer:hunter2@db/kalshi')
logging.getLogger('kalshi.gather').info('listed %d markets', 7)
"""


def test_debug_level_is_ours_alone_and_redacted() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    )
    lines = [line.split(" ", 2)[2] for line in result.stderr.splitlines()]  # no timestamp
    assert lines == [
        "WARNING websockets.client: > KALSHI-ACCESS-SIGNATURE: ***",
        "DEBUG kalshi.net.rest: GET postgresql://writer:***@db/kalshi",
        "INFO kalshi.gather: listed 7 markets",
    ]


def test_redact_hides_each_credential_form() -> None:
    assert redact("> KALSHI-ACCESS-KEY: mykey") == "> KALSHI-ACCESS-KEY: ***"
    assert redact("'KALSHI-ACCESS-SIGNATURE': 'Ra1s=='") == "'KALSHI-ACCESS-SIGNATURE': '***'"
    assert redact("kalshi-access-key=abc, next") == "kalshi-access-key=***, next"
    assert redact("Authorization: Bearer t0k") == "Authorization: ***"
    assert redact("s3://AKIA:s3cr3t@bucket/x") == "s3://AKIA:***@bucket/x"
    assert redact("KALSHI-ACCESS-TIMESTAMP: 1764600000000") == (
        "KALSHI-ACCESS-TIMESTAMP: 1764600000000"
    )
