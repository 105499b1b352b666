"""Signed links for the newsletter: confirmation (single use, expiring) and unsubscribe.

A token is ``<payload>.<signature>``, both base64url: the payload is compact JSON
``{"s": subscriber id, "p": purpose, "n": nonce, "e": expiry (unix s, 0 = never)}`` and the
signature is HMAC-SHA256 over it with a secret shared by the gateway (which checks links before
publishing the reader's request) and the newsletter service (which makes them and decides:
single use comes from the nonce, which the service stores and clears once used).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Literal

Purpose = Literal["confirm", "unsubscribe"]
MAX_TOKEN_CHARS = 512


class InvalidToken(ValueError):
    """The link is malformed, tampered with, of another purpose, or expired (the message says which)."""


@dataclass(frozen=True)
class Token:
    subscriber_id: str
    purpose: Purpose
    nonce: str
    expires_at: int


def subscriber_id_for(email: str) -> str:
    """Stable id of a subscriber: a hash of the normalised address (also its Kafka key)."""
    return hashlib.blake2b(email.strip().lower().encode("utf-8"), digest_size=12).hexdigest()


def new_nonce() -> str:
    return secrets.token_urlsafe(12)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode("utf-8"), payload.encode("ascii"), hashlib.sha256).digest())


def make_token(secret: str, subscriber_id: str, purpose: Purpose, nonce: str, *, ttl_s: float | None, now: float | None = None) -> str:
    expires = 0 if ttl_s is None else int((time.time() if now is None else now) + ttl_s)
    payload = _b64(json.dumps({"s": subscriber_id, "p": purpose, "n": nonce, "e": expires}, separators=(",", ":")).encode())
    return f"{payload}.{_sign(secret, payload)}"


def read_token(secret: str, token: str, purpose: Purpose, *, now: float | None = None) -> Token:
    """Check the signature, purpose and expiry; raises :class:`InvalidToken`."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise InvalidToken("malformed link")
    payload, signature = token.split(".")
    try:
        expected = _sign(secret, payload)
    except UnicodeEncodeError:
        raise InvalidToken("malformed link") from None
    if not hmac.compare_digest(expected, signature):
        raise InvalidToken("bad signature")
    try:
        data = json.loads(_unb64(payload))
        parsed = Token(str(data["s"]), data["p"], str(data["n"]), int(data["e"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidToken("malformed link") from None
    if parsed.purpose != purpose:
        raise InvalidToken(f"not a {purpose} link")
    if parsed.expires_at and parsed.expires_at < (time.time() if now is None else now):
        raise InvalidToken("link expired")
    return parsed
