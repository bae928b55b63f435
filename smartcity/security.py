"""API keys and resident meter tokens: how they are made, stored and compared.

A key is `sc_` + 43 characters of base64url: 32 bytes (256 bits) from `secrets.token_bytes`.
A meter token is the same with the prefix `mt_`. Only the SHA-256 digest of a key is stored.

Why SHA-256 and not bcrypt/scrypt/argon2: slow, salted hashes protect *low-entropy* secrets
(passwords) from offline guessing after a database leak. These keys are 256 random bits; no
amount of guessing finds one, slow or fast, so a slow hash would add nothing but ~100 ms of CPU
per request (and could not be looked up by an index). A fast, unsalted SHA-256 lets the API find
a key by its digest in one indexed lookup; the final comparison of the digests uses
`hmac.compare_digest` so that no byte-by-byte timing is observable. A stolen database gives
digests, from which no key can be recovered.

Roles are ordered: viewer < operator < admin. A key may do what its role and any lower role may.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from enum import StrEnum

KEY_BYTES = 32  # 256 bits: unguessable, so a fast hash is enough (see the module docstring)
API_KEY_PREFIX = "sc_"
METER_TOKEN_PREFIX = "mt_"  # noqa: S105 - a public prefix, not a secret
# Long enough to tell keys apart in `apikey list`, far too short to help a guesser (the prefix
# plus 6 of 43 random characters leaves 220 unknown bits).
SHOWN_PREFIX_CHARS = len(API_KEY_PREFIX) + 6


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def new_secret(prefix: str) -> str:
    """A fresh random key or token: `prefix` + base64url of 32 random bytes, no padding."""
    raw = secrets.token_bytes(KEY_BYTES)
    return prefix + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def digest(secret: str) -> bytes:
    """The stored form of a key or token."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def same_digest(a: bytes, b: bytes) -> bool:
    """Constant-time equality of two digests."""
    return hmac.compare_digest(a, b)


def looks_like(secret: str, prefix: str) -> bool:
    """Cheap shape check before touching the database (not a security boundary)."""
    return secret.startswith(prefix) and 40 <= len(secret) <= 80
