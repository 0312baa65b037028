"""Public helpers for tests: a real S3 server and the simulated exchange."""

from kalshi.testing._sim import shared_key_pem, signed_headers, sim
from kalshi.testing.s3server import S3Server, find_weed

__all__ = ["S3Server", "find_weed", "shared_key_pem", "signed_headers", "sim"]
