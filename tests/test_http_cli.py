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
