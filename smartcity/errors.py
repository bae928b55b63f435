"""The exceptions of the shared core, in one tree.

    SmartCityError                  base of everything the project raises on purpose
    ├── ConfigurationError          a setting is missing or contradictory; the message names it
    ├── ServiceUnavailableError     PostgreSQL or the MQTT broker cannot be reached
    ├── MigrationError              a schema migration failed; the message names its version
    └── PayloadError                a message cannot become rows (the reason goes to dead_letters)

Every message says what was wrong and what to do about it.
"""

from __future__ import annotations


class SmartCityError(Exception):
    """Base class of the project's own errors."""


class ConfigurationError(SmartCityError):
    """A setting is missing, malformed or contradicts another one."""


class ServiceUnavailableError(SmartCityError):
    """A required server (PostgreSQL, MQTT broker) cannot be reached."""


class MigrationError(SmartCityError):
    """A schema migration could not be applied."""


class PayloadError(SmartCityError):
    """A message could not be turned into rows.

    `reason` is a short stable code (it is the `dead_letters.reason` column and a metric label);
    `detail` is the human explanation.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
