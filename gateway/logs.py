"""How the daemon's log lines look: `[log] format = "text" | "json"` and `level`.

Owns `configure_logging(LogConfig)` (called once by `tandem run`) and the two formatters. A line
about one message names it: the caller passes `extra=message_fields(message_id, ...)`, which
the text format appends as `[message=<id>]` and the json format writes as the `message_id`
field (beside `link`, `account` when given), so a log shipper can join a message's lines.

What must never reach a log line (API keys, passwords, OTP codes, message texts) is kept out
where the line is written; as a last guard both formatters blank anything shaped like an API
key (`tdm_...`) in the rendered text and the traceback.

Never does: I/O of its own (lines go to stderr, where systemd's journal or the shell takes them).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import urllib.parse
from typing import Any

from gateway.config import LogConfig

# Extra fields a log call may carry (`extra=`); json writes them as fields, text appends them.
FIELDS = ("message_id", "link", "account", "node")
_API_KEY = re.compile(r"tdm_[A-Za-z0-9_\-]{6,}")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def message_fields(
    message_id: str, *, link: str | None = None, account: str | None = None
) -> dict[str, str]:
    """`extra=` for a log line about one message."""
    fields = {"message_id": message_id}
    if link is not None:
        fields["link"] = link
    if account is not None:
        fields["account"] = account
    return fields


def url_for_log(url: str) -> str:
    """A customer's URL without what may carry a secret (user:password@, ?query, #fragment)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _redact(text: str) -> str:
    return _API_KEY.sub("tdm_<redacted>", text) if "tdm_" in text else text


class TextFormatter(logging.Formatter):
    """The human format; a message's id (and link) follow the text in brackets."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [
            f"{'message' if name == 'message_id' else name}={getattr(record, name)}"
            for name in FIELDS
            if getattr(record, name, None) is not None
        ]
        if tags:
            head, newline, tail = line.partition("\n")  # a traceback stays below the line
            line = f"{head} [{' '.join(tags)}]{newline}{tail}"
        return _redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, logger, msg, the message's id
    and link when the line is about one, and the traceback as `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": _redact(record.getMessage()),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = value
        if record.exc_info:
            document["exc"] = _redact(self.formatException(record.exc_info))
        elif record.exc_text:
            document["exc"] = _redact(record.exc_text)
        return json.dumps(document, ensure_ascii=False, default=str)


def _rfc3339(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class _NodeName(logging.Filter):
    """Stamps each line with the node's name (several nodes on one database log alike)."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


def configure_logging(config: LogConfig, *, node: str | None = None) -> None:
    """The root logger writes `config.format` lines at `config.level` to stderr; with `node`
    (a node of a cluster), every line carries its name."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    if node is not None:
        handler.addFilter(_NodeName(node))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level)
