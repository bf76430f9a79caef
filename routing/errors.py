"""Typed refusals of the routing room: each carries a machine `code` and a human `reason`.

Owns: the error types the gateway maps to HTTP 4xx / SMPP statuses.
Must never: know HTTP or SMPP codes (the mapping is the gateway's).
"""

from __future__ import annotations

from enum import StrEnum


class RoutingRefusal(Exception):
    """A message cannot be routed; `code` is stable, `reason` is a sentence for people."""

    code: str

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class InvalidNumberCode(StrEnum):
    NOT_A_NUMBER = "not_a_number"
    MISSING_COUNTRY = "missing_country"
    INVALID_COUNTRY_CODE = "invalid_country_code"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    NOT_POSSIBLE = "not_possible"
    NOT_ALLOCATED = "not_allocated"


class InvalidNumber(RoutingRefusal):
    """The destination is not a number we can send to."""

    def __init__(self, raw: str, code: InvalidNumberCode, reason: str) -> None:
        super().__init__(code.value, reason)
        self.raw = raw
        self.number_code = code


class NoRoute(RoutingRefusal):
    """No `[[routes]]` entry matches the message's facts."""

    def __init__(self, reason: str) -> None:
        super().__init__("no_route", reason)


class TableFormatError(ValueError):
    """A prefix or ported-number file has a line that cannot be read."""

    def __init__(self, path: str, line_number: int, problem: str) -> None:
        super().__init__(f"{path}:{line_number}: {problem}")
        self.path = path
        self.line_number = line_number
        self.problem = problem
