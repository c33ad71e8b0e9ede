"""Paystack webhook signatures: hex HMAC-SHA512 of the raw body, keyed with the secret key."""

from __future__ import annotations

import hashlib
import hmac


def sign(body: bytes, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()


def verify_signature(body: bytes, signature: str | bytes | None, secret_key: str) -> bool:
    """Constant-time check; anything that is not a well-formed signature is simply invalid.

    `hmac.compare_digest` raises TypeError on a str holding non-ASCII characters, so the
    header is turned into bytes first and any decoding problem counts as a mismatch.
    """
    if not signature:
        return False
    if isinstance(signature, str):
        try:
            signature = signature.strip().encode("ascii")
        except UnicodeEncodeError:
            return False
    expected = sign(body, secret_key).encode("ascii")
    return hmac.compare_digest(expected, signature.strip().lower())
