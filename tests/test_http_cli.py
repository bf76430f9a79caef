"""`tandem send` and `tandem otp send|check` against a running daemon's HTTP API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.test_http_harness import running_daemon


async def test_send_and_otp_commands_talk_to_the_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_daemon(tmp_path) as daemon:
        monkeypatch.setenv("TANDEM_API_KEY", daemon.key.secret)
        common = ["--url", daemon.url]
        argv = ["send", *common, "--to", "+447911123456", "--text", "route test", "--from", "Ops"]
        assert await asyncio.to_thread(main, argv) == 0
        sent = json.loads(capsys.readouterr().out)
        assert (sent["to"], sent["status"]) == ("+447911123456", "queued")
        record = await daemon.gateway.message_store.get(sent["id"])
        assert record is not None and record.message.text == "route test"

        argv = ["otp", "send", *common, "--to", "+447911123456", "--code", "5555"]
        assert await asyncio.to_thread(main, argv) == 0
        otp = json.loads(capsys.readouterr().out)
        assert await asyncio.to_thread(main, ["otp", "check", *common, otp["id"], "5550"]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "pending"
        assert await asyncio.to_thread(main, ["otp", "check", *common, otp["id"], "5555"]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "approved"

        argv = ["send", *common, "--to", "+4412", "--text", "x"]
        assert await asyncio.to_thread(main, argv) == 1
        assert "422 invalid_number (to)" in capsys.readouterr().err
        monkeypatch.delenv("TANDEM_API_KEY")
        argv = ["send", *common, "--to", "+447911123456", "--text", "x"]
        assert await asyncio.to_thread(main, argv) == 2
        assert "TANDEM_API_KEY" in capsys.readouterr().err


async def test_send_without_from_uses_the_configured_default_sender(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "cli.toml"
    config.write_text('[http]\ndefault_sender = "Acme"\n', encoding="utf-8")
    async with running_daemon(tmp_path, http={"default_sender": "Acme"}) as daemon:
        monkeypatch.setenv("TANDEM_API_KEY", daemon.key.secret)
        argv = ["send", "-c", str(config), "--url", daemon.url, "--to", "+447400123456"]
        assert await asyncio.to_thread(main, [*argv, "--text", "no from"]) == 0
        sent = json.loads(capsys.readouterr().out)
        received = await daemon.received_by_handset(sent["id"])
        assert received.source_addr == "Acme"
        # The API applies the same default to a request without `from`.
        status, document, _ = await daemon.call(
            "POST", "/v1/messages", {"to": "+447400123456", "text": "api, no from"}
        )
        assert status == 202, document
        received = await daemon.received_by_handset(document["id"])
        assert received.source_addr == "Acme"


def test_send_without_from_or_a_default_sender_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cli.toml"
    config.write_text("[simulator]\nenabled = false\n", encoding="utf-8")
    argv = ["send", "-c", str(config), "--key", "tdm_x", "--to", "+447400123456", "--text", "x"]
    # No daemon listens there: the refusal comes before any request.
    assert main([*argv, "--url", "http://127.0.0.1:9"]) == 2
    assert "give --from, or set [http] default_sender" in capsys.readouterr().err
