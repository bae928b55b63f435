"""MQTT device credentials in Mosquitto's password-file format.

Mosquitto 2 stores `username:$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 with a
12-byte salt, both base64-encoded (the format `mosquitto_passwd` writes). Generating it here
lets an operator provision a fleet without the Mosquitto tools; the tests check that a real
Mosquitto accepts these lines.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path

from smartcity import topics
from smartcity.errors import ConfigurationError

# mosquitto_passwd's defaults (Mosquitto 2.0): 101 iterations, 12-byte salt.
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
# A device password: 24 random bytes, URL-safe, so it can be flashed or typed without escaping.
DEVICE_PASSWORD_BYTES = 24


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_line(username: str, password: str) -> str:
    """One line of a Mosquitto password file."""
    if not topics.is_valid_level(username):
        # The username is the device id that the ACL substitutes into topics: it must be one
        # valid topic level, or the device could not publish (or could reach other topics).
        raise ConfigurationError(
            f"device id {username!r} cannot be an MQTT username: use letters, digits, '-', "
            "'_' or '.', at most 64 characters"
        )
    return f"{username}:{hash_password(password)}"


def add_device(path: Path, device_id: str) -> str:
    """Append a credential for `device_id` to `path`; return the new password (shown once)."""
    existing = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if any(line.split(":", 1)[0] == device_id for line in existing):
        raise ConfigurationError(
            f"{path} already has a credential for {device_id!r}; remove its line first to "
            "issue a new password"
        )
    password = secrets.token_urlsafe(DEVICE_PASSWORD_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(password_line(device_id, password) + "\n")
    path.chmod(0o600)
    return password
