"""Journal fixtures: the S3 server fixture (``s3_server``) lives in ``tests/conftest.py``."""
