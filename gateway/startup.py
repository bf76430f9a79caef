"""How a start-up step that fails is reported: one line naming the config section, the address
and the reason, never a traceback.

Owns `StartupError` and `startup_step`, the context manager the daemon wraps each step of its
start-up in (a listener that cannot bind, a certificate that cannot be read). Never does: clean
up; `gateway.app.Gateway.start` undoes what was started before it lets the error out.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager


class StartupError(Exception):
    """A start-up step that failed; `str()` is one line: `[section] address: reason`."""

    def __init__(self, section: str, address: str, reason: str) -> None:
        where = f"[{section}] {address}" if address else f"[{section}]"
        super().__init__(f"cannot start {where}: {reason}")
        self.section = section
        self.address = address
        self.reason = reason


def reason_of(exc: BaseException) -> str:
    """The reason of a failure in a few words: the errno's text for an OSError (a wrapped one
    may carry its own sentence as `strerror`), else the exception's text on one line."""
    if isinstance(exc, ssl.SSLError):  # its errno is the library's code, not an errno
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno is not None:
        text = os.strerror(exc.errno).lower()
        return f"{text}: {exc.filename}" if exc.filename else text
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@contextmanager
def startup_step(section: str, address: str = "") -> Iterator[None]:
    """Turn any failure inside into a `StartupError` for `section` at `address`; a
    `StartupError` raised deeper (it knows its step better) passes unchanged."""
    try:
        yield
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(section, address, reason_of(exc)) from exc
