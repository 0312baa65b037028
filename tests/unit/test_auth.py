"""Request signing as the reference specifies."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from kalshi.auth import (
    Signer,
    generate_rsa_key_pem,
    load_private_key,
    signing_path,
    verify_signature,
)
from kalshi.errors import AuthError


@pytest.fixture(scope="module")
def pem() -> bytes:
    return generate_rsa_key_pem()[0]


def test_signature_is_rsa_pss_sha256_over_ts_method_path(pem: bytes) -> None:
    key = load_private_key(pem.decode())
    assert isinstance(key, rsa.RSAPrivateKey)
    signer = Signer("key-id", key)
    headers = signer.headers(
        "get", "https://h/trade-api/v2/portfolio/orders?limit=5", 1703123456789
    )
    assert headers["KALSHI-ACCESS-KEY"] == "key-id"
    assert headers["KALSHI-ACCESS-TIMESTAMP"] == "1703123456789"
    raw = base64.b64decode(headers["KALSHI-ACCESS-SIGNATURE"])
    # Verify independently with the reference's exact parameters (salt = digest length).
    key.public_key().verify(
        raw,
        b"1703123456789GET/trade-api/v2/portfolio/orders",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    assert verify_signature(
        key.public_key(),
        b"1703123456789GET/trade-api/v2/portfolio/orders",
        headers["KALSHI-ACCESS-SIGNATURE"],
    )
    assert not verify_signature(
        key.public_key(), b"1703123456789GET/other", headers["KALSHI-ACCESS-SIGNATURE"]
    )
    assert repr(signer) == "Signer(key_id='key-id')"


def test_signing_path() -> None:
    assert signing_path("wss://x/trade-api/ws/v2") == "/trade-api/ws/v2"
    assert signing_path("/trade-api/v2/markets?limit=1") == "/trade-api/v2/markets"


def test_key_sources(tmp_path: Path, pem: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    assert isinstance(load_private_key(str(path)), rsa.RSAPrivateKey)
    monkeypatch.setenv("MY_KEY", pem.decode())
    assert isinstance(load_private_key("env:MY_KEY"), rsa.RSAPrivateKey)


def test_key_errors_are_clear_and_never_show_the_key(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="no private key configured"):
        load_private_key("")
    with pytest.raises(AuthError, match=r"cannot read private key file .*missing\.pem"):
        load_private_key(str(tmp_path / "missing.pem"))
    with pytest.raises(AuthError, match="environment variable NOPE_KEY"):
        load_private_key("env:NOPE_KEY")
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(AuthError, match="does not hold an unencrypted PEM private key") as info:
        load_private_key(str(bad))
    assert "AAAA" not in str(info.value)
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    wrong = tmp_path / "ec.pem"
    wrong.write_bytes(ec_key)
    with pytest.raises(AuthError, match=r"ec\.pem holds a ECPrivateKey; need RSA or Ed25519"):
        load_private_key(str(wrong))
