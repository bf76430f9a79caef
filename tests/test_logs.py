"""`[log] format`: the text and json lines, the message id on lines about a message, and the
last guard that blanks API keys and the secret parts of customers' URLs."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.config import ConfigError, parse_config
from gateway.logs import JsonFormatter, TextFormatter, message_fields, url_for_log


def record(message: str, *args: object, **extra: str) -> logging.LogRecord:
    made = logging.LogRecord("tandem", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_json_lines_carry_the_message_id_as_a_field() -> None:
    line = JsonFormatter().format(
        record("callback for message %s failed", "0123", **message_fields("0123", link="a"))
    )
    document = json.loads(line)
    assert document["msg"] == "callback for message 0123 failed"
    assert document["message_id"] == "0123" and document["link"] == "a"
    assert document["level"] == "WARNING" and document["logger"] == "tandem"
    assert document["ts"].endswith("Z")


def test_text_lines_name_the_message_after_the_text() -> None:
    line = TextFormatter().format(record("given up", **message_fields("0123", account="acme")))
    assert line.endswith("WARNING tandem: given up [message=0123 account=acme]")
    assert TextFormatter().format(record("link up")).endswith("tandem: link up")


def test_exceptions_stay_in_one_json_line() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        import sys

        made = record("failed")
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    assert "ValueError: broken" in json.loads(line)["exc"]


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_an_api_key_in_a_line_is_blanked(formatter: logging.Formatter) -> None:
    line = formatter.format(record("bad header %s", "Bearer tdm_abcdefgh12345678"))
    assert "abcdefgh12345678" not in line and "tdm_<redacted>" in line


def test_urls_lose_credentials_query_and_fragment() -> None:
    assert url_for_log("https://u:pw@h.example:8443/cb?token=s3cret#x") == (
        "https://h.example:8443/cb"
    )


def test_log_settings_are_checked() -> None:
    config = parse_config('[log]\nformat = "json"\nlevel = "DEBUG"\n', "t.toml")
    assert config.log.format == "json" and config.log.level == "DEBUG"
    with pytest.raises(ConfigError, match=r"log\.format"):
        parse_config('[log]\nformat = "xml"\n', "t.toml")


def test_every_log_call_that_names_a_message_passes_its_id_as_a_field() -> None:
    """A log call whose arguments include a message id (`message.id`, `message_id`, ...) says
    so with `extra=message_fields(...)`, so the json format carries it as `message_id`."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "gateway"
    levels = {"debug", "info", "warning", "error", "exception", "critical"}
    missing = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in levels
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("log", "logger")
            ):
                continue
            names_a_message = any(
                (
                    isinstance(arg, ast.Attribute)
                    and arg.attr == "id"
                    and "message" in ast.unparse(arg)
                )
                or (isinstance(arg, ast.Name) and arg.id == "message_id")
                or (isinstance(arg, ast.Attribute) and arg.attr == "message_id")
                for arg in node.args[1:]
            )
            if names_a_message and not any(k.arg == "extra" for k in node.keywords):
                missing.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    assert missing == []
