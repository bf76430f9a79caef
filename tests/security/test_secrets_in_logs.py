"""No secret reaches the daemon's log: a bad-input corpus against a real `tandem run` process
(oversized headers and request lines, unknown bearer keys, bad JSON, wrong and right OTP codes,
SMPP binds with wrong passwords through smpplib), then every secret used is looked for in what
the daemon wrote."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import smpplib.client
import smpplib.exceptions

from smpp.pdu import BindReceiver, BindTransceiver, BindTransmitter, Outbind
from tests.daemon_processes import TANDEM, create_key, daemon, free_port, wait_http
from tests.waiting import wait_for

UK = "+447400123456"
CODE_LENGTH = 10  # long codes: a chance match with a number in the log is out of the question


def write_daemon_config(
    workdir: Path, *, http: int, smpp: int, sim: int, link_pw: str, log_format: str = "text"
) -> Path:
    path = workdir / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{workdir / "data"}"
[log]
format = "{log_format}"
[store]
writer = "thread"
[smpp_server]
enabled = true
host = "127.0.0.1"
port = {smpp}
[http]
host = "127.0.0.1"
port = {http}
auth_failures_burst = 5
[otp]
code_length = {CODE_LENGTH}
[simulator]
enabled = true
port = {sim}
dlr_delay = 0.0
record_file = "{workdir / "sim.record"}"
[[links]]
type = "smpp"
name = "sim"
host = "127.0.0.1"
port = {sim}
system_id = "tandem"
password = "{link_pw}"
reconnect_initial = 0.1
[[routes]]
name = "everything"
priority = 100
targets = ["sim"]
""",
        encoding="utf-8",
    )
    return path


def add_account(config: Path, system_id: str, password: str) -> None:
    subprocess.run(
        [*TANDEM, "accounts", "-c", str(config), "add", system_id, "--password", password],
        check=True,
        capture_output=True,
    )


def smpp_bind(port: int, system_id: str, password: str) -> int:
    """Bind with smpplib (blocking: run it in a thread); the command_status it got."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    try:
        client.bind_transmitter(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1])
    finally:
        try:
            client.disconnect()
        except Exception:
            pass
    return 0


async def raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await reader.read(65536)
    finally:
        writer.close()


def otp_codes(record: Path) -> list[str]:
    codes = []
    for line in record.read_text(encoding="utf-8").splitlines():
        codes += re.findall(rf"\d{{{CODE_LENGTH}}}", json.loads(line)["text"])
    return codes


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_the_bad_input_corpus_leaves_no_secret_in_the_log(
    tmp_path: Path, log_format: str
) -> None:
    http_port, smpp_port, sim_port = free_port(), free_port(), free_port()
    link_password = "Lk" + secrets.token_hex(3)
    config = write_daemon_config(
        tmp_path,
        http=http_port,
        smpp=smpp_port,
        sim=sim_port,
        link_pw=link_password,
        log_format=log_format,
    )
    account_password = "Ac" + secrets.token_hex(3)
    add_account(config, "acme", account_password)
    api_key = await asyncio.to_thread(create_key, config)
    secrets_used: list[str] = [api_key, link_password, account_password]
    process = daemon(tmp_path, config).start()
    url = f"http://127.0.0.1:{http_port}"
    try:
        await wait_http(url + "/openapi.json")
        async with aiohttp.ClientSession() as session:

            async def call(method: str, path: str, key: str, **kwargs: Any) -> int:
                headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
                async with session.request(method, url + path, headers=headers, **kwargs) as r:
                    await r.read()
                    return r.status

            # Oversized headers: the bearer itself, and another header carrying a token.
            huge_key = "tdm_" + secrets.token_urlsafe(7500)
            huge_other = secrets.token_urlsafe(9000)
            secrets_used += [huge_key, huge_other]
            assert await call("GET", "/v1/messages/00000000000000000000", huge_key) == 431
            assert (
                await call("GET", "/openapi.json", api_key, headers={"X-Session-Token": huge_other})
                == 431
            )
            # An oversized request line carrying a token in its query.
            line_token = secrets.token_urlsafe(4000)
            secrets_used.append(line_token)
            answer = await raw_exchange(
                http_port,
                f"GET /v1/messages?token={line_token} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
            )
            assert answer.split(b" ", 2)[1] == b"414", answer[:100]
            # A malformed head with a key in it.
            answer = await raw_exchange(
                http_port, f"GET / HTTP/1.1\r\nAuthorization {api_key}\r\n\r\n".encode()
            )
            assert answer.split(b" ", 2)[1] == b"400", answer[:100]
            # The customer's key is known to the daemon before the guessing starts.
            assert await call("GET", "/v1/messages/00000000000000000000", api_key) == 404
            # Unknown and malformed bearer keys, until the address is limited.
            for _ in range(8):
                guess = "tdm_" + secrets.token_urlsafe(32)
                secrets_used.append(guess)
                status = await call("GET", "/v1/messages/00000000000000000000", guess)
                assert status in (401, 429)
            # Bad JSON and bad fields, with the key and text that must stay out of the log.
            body_secret = secrets.token_urlsafe(16)
            secrets_used.append(body_secret)
            for raw in (
                b'{"to": "' + UK.encode() + b'", "text": "' + body_secret.encode(),
                json.dumps({"to": body_secret, "text": "hi"}).encode(),
                json.dumps({"to": UK, "text": "hi", "secret": body_secret}).encode(),
            ):
                status = await call(
                    "POST",
                    "/v1/messages",
                    api_key,
                    data=raw,
                    headers={"Content-Type": "application/json"},
                )
                assert status in (400, 422), raw
            # OTP: wrong codes until blocked, then a fresh one checked with its right code.
            async with session.post(
                url + "/v1/otp", json={"to": UK}, headers={"Authorization": f"Bearer {api_key}"}
            ) as response:
                assert response.status == 201, await response.text()
                first = (await response.json())["id"]
            for _ in range(6):
                wrong = "".join(secrets.choice("0123456789") for _ in range(CODE_LENGTH))
                secrets_used.append(wrong)
                status = await call("POST", f"/v1/otp/{first}/check", api_key, json={"code": wrong})
                assert status in (200, 429)
            async with session.post(
                url + "/v1/otp", json={"to": UK}, headers={"Authorization": f"Bearer {api_key}"}
            ) as response:
                second = (await response.json())["id"]
            record = tmp_path / "sim.record"
            await wait_for(
                lambda: record.exists() and len(otp_codes(record)) >= 2,
                "the second code in the simulator's record",
                interval=0.05,
            )
            codes = otp_codes(record)
            assert len(codes) == 2, codes
            secrets_used += codes
            assert (
                await call("POST", f"/v1/otp/{second}/check", api_key, json={"code": codes[1]})
                == 200
            )
        # SMPP binds: wrong passwords for a real account and an unknown one, then the right one.
        for system_id, password in (
            ("acme", "Wr" + secrets.token_hex(3)),
            ("acme", "Xq" + secrets.token_hex(3)),
            ("nobody", "Nb" + secrets.token_hex(3)),
        ):
            secrets_used.append(password)
            assert await asyncio.to_thread(smpp_bind, smpp_port, system_id, password) != 0
        await asyncio.to_thread(smpp_bind, smpp_port, "acme", account_password)
        # A connection that sends garbage where a PDU should be.
        with socket.create_connection(("127.0.0.1", smpp_port), timeout=5) as raw_socket:
            raw_socket.sendall(b"\x00\x00\x00\x10" + api_key.encode()[:12])
    finally:
        process.stop()
    raw = log = process.output()
    if log_format == "json":  # every daemon line is one JSON object (the CLI's lines are not)
        lines = [line for line in log.splitlines() if line.startswith("{")]
        assert len(lines) > 10
        assert all(json.loads(line)["level"] for line in lines)
        log = "\n".join(json.loads(line)["msg"] + json.loads(line).get("exc", "") for line in lines)
    assert "Traceback" not in log, log[-3000:]
    assert log.count("refused: A request header field is over") == 2, log[-3000:]
    leaked = [
        secret
        for secret in secrets_used
        if secret in raw or (len(secret) > 24 and secret[:24] in raw)
    ]
    assert leaked == [], f"secrets in the log: {leaked}"


def test_bind_pdus_do_not_show_their_password() -> None:
    for pdu in (
        BindTransmitter(system_id="acme", password="pw123456"),
        BindReceiver(system_id="acme", password="pw123456"),
        BindTransceiver(system_id="acme", password="pw123456"),
        Outbind(system_id="acme", password="pw123456"),
    ):
        assert "pw123456" not in repr(pdu)
        assert pdu.password == "pw123456"
