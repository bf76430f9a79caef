"""The operator's status: `GET /status` (HTML, rendered by headless Chromium: its DOM holds the
link and bind tables, its screenshot shows the link's green "up" cell), `GET /admin/status`
(JSON) and `tandem status` (the same facts in a terminal), from a real `tandem run` with an
SMPP customer bound, messages delivered and a refused bind among the recent warnings. Without
the admin token the page is refused, and a browser is asked for Basic credentials."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import smpplib.client

from tests.daemon_processes import ROOT, TANDEM, create_key, daemon, free_port, wait_http
from tests.security.test_secrets_in_logs import add_account, smpp_bind
from tests.waiting import wait_for

UP_GREEN = (0xC8, 0xF0, 0xC8)  # gateway.status: the `.up` cell's background


def write_config(workdir: Path, *, http: int, smpp: int, sim: int) -> Path:
    path = workdir / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{workdir / "data"}"
[store]
writer = "thread"
[smpp_server]
host = "127.0.0.1"
port = {smpp}
[http]
host = "127.0.0.1"
port = {http}
[simulator]
enabled = true
port = {sim}
dlr_delay = 0.0
[[links]]
type = "smpp"
name = "carrier-a"
host = "127.0.0.1"
port = {sim}
system_id = "tandem"
reconnect_initial = 0.1
[[routes]]
name = "everything"
priority = 100
targets = ["carrier-a"]
""",
        encoding="utf-8",
    )
    return path


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found is not None:
            return found
    pytest.skip("no headless Chromium (Debian: the chromium package)")


def run_chromium(workdir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # tests may run as root
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={workdir / 'chromium'}",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def png_pixels(path: Path) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and the RGB pixels of an 8-bit RGB or RGBA PNG (Chromium's screenshot)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks += body
        at += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(chunks)
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 0xFF
        pixels += [tuple(line[i : i + 3]) for i in range(0, stride, channels)]  # type: ignore[misc]
        previous = line
    return width, height, pixels


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as answer:
        return answer.status, await answer.text(), answer.headers


async def test_status_page_command_and_json_show_links_binds_rates_and_errors(
    tmp_path: Path,
) -> None:
    http_port, smpp_port, sim_port = free_port(), free_port(), free_port()
    config = write_config(tmp_path, http=http_port, smpp=smpp_port, sim=sim_port)
    add_account(config, "acme", "acmepass")
    key = await asyncio.to_thread(create_key, config)
    process = daemon(tmp_path, config).start()
    url = f"http://127.0.0.1:{http_port}"
    customer = None
    try:
        await wait_http(url + "/openapi.json")
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        # A customer stays bound; a wrong password makes a warning.
        customer = smpplib.client.Client(
            "127.0.0.1", smpp_port, timeout=5, allow_unknown_opt_params=True
        )
        await asyncio.to_thread(customer.connect)
        await asyncio.to_thread(customer.bind_transceiver, system_id="acme", password="acmepass")
        assert await asyncio.to_thread(smpp_bind, smpp_port, "acme", "wrongpw1") != 0
        async with aiohttp.ClientSession() as session:
            for n in range(20):
                async with session.post(
                    url + "/v1/messages",
                    json={"to": "+447400123456", "from": "Shop", "text": f"hello {n}"},
                    headers={"Authorization": f"Bearer {key}"},
                ) as answer:
                    assert answer.status == 202, await answer.text()
        bearer = {"Authorization": f"Bearer {token}"}
        seen: list[dict[str, Any]] = [{}]

        async def up_and_delivering() -> bool:
            _, body, _ = await get(url + "/admin/status", bearer)
            seen[0] = document = json.loads(body)
            rates = document["rates"][0]["per_second"]
            return bool(document["links"][0]["state"] == "up" and rates.get("delivered", 0) > 0)

        await wait_for(
            up_and_delivering, lambda: f"a link up and delivering: {seen[0]}", interval=0.3
        )
        document = seen[0]
        assert document["binds"] == [
            {"account": "acme", "bind": "transceiver", "address": "127.0.0.1"}
        ]
        assert document["rates"][0]["delivery_ratio"] == 1.0
        assert any("bind refused" in error["text"] for error in document["errors"])

        # Without the token: refused, and a browser is asked for Basic credentials.
        status, _, headers = await get(url + "/status")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
        basic = base64.b64encode(f"operator:{token}".encode()).decode()
        status, page, _ = await get(url + "/status", {"Authorization": f"Basic {basic}"})
        assert status == 200 and '<table id="links">' in page
        wrong = base64.b64encode(b"operator:not-the-token").decode()
        assert (await get(url + "/status", {"Authorization": f"Basic {wrong}"}))[0] == 401

        # The terminal view.
        shown = subprocess.run(
            [*TANDEM, "status", "-c", str(config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout
        assert shown.startswith("tandem: 1/1 links up, 1 customer binds")
        assert any(line.split()[:2] == ["carrier-a", "up"] for line in shown.splitlines())
        assert any(
            line.split() == ["acme", "transceiver", "127.0.0.1"] for line in shown.splitlines()
        )
        assert "delivery ratio  100.0 %" in shown
        assert "bind refused" in shown

        # Headless Chromium: the DOM it built, then what it drew.
        page_url = f"http://operator:{token}@127.0.0.1:{http_port}/status"
        dom = await asyncio.to_thread(run_chromium, tmp_path, "--dump-dom", page_url)
        assert '<table id="links">' in dom.stdout, dom.stderr[-2000:]
        assert '<tr class="link"><td>carrier-a</td><td class="up">up</td>' in dom.stdout
        assert "<td>acme</td><td>transceiver</td>" in dom.stdout
        shot = tmp_path / "status.png"
        drawn = await asyncio.to_thread(
            run_chromium,
            tmp_path,
            "--window-size=1000,700",
            f"--screenshot={shot}",
            page_url,
        )
        assert shot.exists(), drawn.stderr[-2000:]
        width, height, pixels = png_pixels(shot)
        assert (width, height) == (1000, 700)
        green = sum(1 for pixel in pixels if pixel == UP_GREEN)
        # The "up" cell: some hundreds of pixels of its background around the word.
        assert green > 300, green
        # The page is drawn, not blank: dark text and the tables' header background too.
        assert sum(1 for pixel in pixels if max(pixel) < 80) > 1000
        assert sum(1 for pixel in pixels if pixel == (0xE8, 0xEE, 0xF6)) > 1000
    finally:
        if customer is not None:
            try:
                customer.unbind()
                customer.disconnect()
            except Exception:
                pass
        process.stop()
    output = process.output()
    assert "Traceback" not in output, output[-3000:]
