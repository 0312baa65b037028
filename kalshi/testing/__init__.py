"""Public helpers for tests: a real S3 server and the simulated exchange."""

from kalshi.ports import free_port, free_ports
from kalshi.testing._sim import PINNED_START_US, shared_key_pem, signed_headers, sim
from kalshi.testing.s3server import S3Server, find_weed

__all__ = [
    "PINNED_START_US",
    "S3Server",
    "find_weed",
    "free_port",
    "free_ports",
    "shared_key_pem",
    "signed_headers",
    "sim",
]
