"""Request signing, exactly as the reference says (§1.2).

Headers: ``KALSHI-ACCESS-KEY``, ``KALSHI-ACCESS-TIMESTAMP`` (ms) and
``KALSHI-ACCESS-SIGNATURE`` = base64 RSA-PSS(SHA-256, MGF1-SHA-256, salt = 32 bytes) over
``timestamp_ms + METHOD + path`` where path starts at ``/trade-api`` and has no query.
Ed25519 keys sign the same text. The key material never appears in a ``repr`` or a log line.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from kalshi.errors import AuthError

__all__ = [
    "ACCESS_KEY",
    "ACCESS_SIGNATURE",
    "ACCESS_TIMESTAMP",
    "Signer",
    "generate_rsa_key_pem",
    "load_private_key",
    "sign_message",
    "signing_path",
    "verify_signature",
]

ACCESS_KEY: Final = "KALSHI-ACCESS-KEY"
ACCESS_TIMESTAMP: Final = "KALSHI-ACCESS-TIMESTAMP"
ACCESS_SIGNATURE: Final = "KALSHI-ACCESS-SIGNATURE"

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def signing_path(url_or_path: str) -> str:
    """The path part that is signed: no scheme, host or query string."""
    return urlsplit(url_or_path).path or "/"


def load_private_key(source: str) -> PrivateKey:
    """Load a PEM private key from a file path, from PEM text, or from ``env:NAME``.

    Raises :class:`AuthError` naming the source (never the key) when it is missing,
    unreadable, or not an RSA/Ed25519 private key.
    """
    if not source:
        raise AuthError("no private key configured (kalshi.api_secret / KALSHI_API_SECRET)")
    if source.startswith("env:"):
        name = source[4:]
        text = os.environ.get(name)
        if not text:
            raise AuthError(f"environment variable {name} holding the private key is not set")
        origin = f"environment variable {name}"
    elif "-----BEGIN" in source:
        text, origin = source, "inline PEM"
    else:
        path = Path(source).expanduser()
        origin = f"file {path}"
        try:
            text = path.read_text()
        except OSError as exc:
            raise AuthError(f"cannot read private key {origin}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise AuthError(f"{origin} does not hold an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise AuthError(f"{origin} holds a {type(key).__name__}; need RSA or Ed25519")
    return key


def sign_message(key: PrivateKey, message: bytes) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(message, _PSS, hashes.SHA256())
    else:
        raw = key.sign(message)
    return base64.b64encode(raw).decode("ascii")


def verify_signature(key: PublicKey, message: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid signature of ``message`` (used by the sim)."""
    try:
        raw = base64.b64decode(signature_b64, validate=True)
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, message, _PSS, hashes.SHA256())
        else:
            key.verify(raw, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class Signer:
    """Signs requests with one API key. ``repr`` shows only the key id."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key_id: str, private_key: PrivateKey) -> None:
        self.key_id = key_id
        self._key = private_key

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    def headers(self, method: str, url_or_path: str, now_ms: int) -> dict[str, str]:
        """The three auth headers for ``method`` on ``url_or_path`` at ``now_ms``."""
        ts = str(now_ms)
        message = (ts + method.upper() + signing_path(url_or_path)).encode()
        return {
            ACCESS_KEY: self.key_id,
            ACCESS_TIMESTAMP: ts,
            ACCESS_SIGNATURE: sign_message(self._key, message),
        }


def generate_rsa_key_pem() -> tuple[bytes, bytes]:
    """A fresh 2048-bit RSA key pair as (private PKCS#1 PEM, public SubjectPublicKeyInfo PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public
