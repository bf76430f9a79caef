"""Operator tables and routes are reloaded without a restart (SIGHUP, `Gateway.reload`): the
prefix and MNP files and the `[[routes]]` of the config file are read again and swapped in at
once; a bad file keeps the tables in use and says why in one log line."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.intake import MessageRequest
from gateway.messages import Channel
from tests.daemon_processes import create_key, daemon, free_port, wait_http
from tests.waiting import wait_for

PREFIXES = "prefix,mno,country\n+447911,Island Mobile,GB\n"
PORTED = "msisdn,mno\n"


def route(name: str, mnos: list[str] | None = None, targets: str = '["carrier"]') -> str:
    match = f"mnos = {json.dumps(mnos)}\n" if mnos else ""
    return f'[[routes]]\nname = "{name}"\npriority = 1\n{match}targets = {targets}\n'


def write_files(
    tmp_path: Path, routes: str, prefixes: str = PREFIXES, http_port: int | None = None
) -> Path:
    (tmp_path / "prefixes.csv").write_text(prefixes, encoding="utf-8")
    (tmp_path / "ported.csv").write_text(PORTED, encoding="utf-8")
    http = f"port = {http_port}\n" if http_port else "enabled = false\n"
    path = tmp_path / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
[smpp_server]
enabled = false
[http]
host = "127.0.0.1"
{http}
[simulator]
enabled = false
[numbering]
prefix_file = "{tmp_path / "prefixes.csv"}"
mnp_file = "{tmp_path / "ported.csv"}"
[[links]]
type = "smpp"
name = "carrier"
host = "127.0.0.1"
port = {free_port()}
system_id = "tandem"
reconnect_initial = 0.5
{routes}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = write_files(tmp_path, route("island", ["Island Mobile"]))
    running = Gateway(load_config(config))
    await running.start()
    yield running
    await running.stop()


def route_of(gateway: Gateway, to: str = "+447911123456") -> str:
    request = MessageRequest(account="a", channel=Channel.HTTP, to=to, text="hi")
    return gateway.intake.prepare(request).decision.route


async def test_reload_swaps_in_new_operator_tables_and_routes(
    gateway: Gateway, tmp_path: Path
) -> None:
    assert gateway.numbers.resolve("+447911123456").operator.mno == "Island Mobile"
    assert route_of(gateway) == "island"
    config = write_files(
        tmp_path,
        route("ninety", ["Ninety Mobile"]),
        prefixes="prefix,mno,country\n+447911,Ninety Mobile,GB\n",
    )
    (tmp_path / "ported.csv").write_text("msisdn,mno\n+447911000001,Island Mobile\n")

    assert await gateway.reload(config)

    assert gateway.numbers.resolve("+447911123456").operator.mno == "Ninety Mobile"
    assert gateway.numbers.resolve("+447911000001").operator.mno == "Island Mobile"
    assert route_of(gateway) == "ninety"
    assert [r.name for r in gateway.routes.routes] == ["ninety"]  # the dispatcher's view too


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("prefix", "prefixes.csv"),
        ("missing table", "ported.csv"),
        ("toml", "tandem.toml"),
        ("disabled link", "disabled: new"),
    ],
)
async def test_a_bad_file_keeps_the_current_tables_and_logs_one_line(
    gateway: Gateway,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    breakage: str,
    expected: str,
) -> None:
    config = tmp_path / "tandem.toml"
    if breakage == "prefix":
        write_files(tmp_path, route("other"), prefixes="prefix,mno,country\n+44x,Broken,GB\n")
    elif breakage == "missing table":
        write_files(tmp_path, route("other"))
        (tmp_path / "ported.csv").unlink()
    elif breakage == "toml":
        config.write_text(config.read_text() + "\n[[routes]\n", encoding="utf-8")
    else:  # a route to a link that would not run
        text = write_files(tmp_path, route("other", targets='["carrier", "new"]')).read_text()
        config.write_text(
            text + '[[links]]\ntype = "smpp"\nname = "new"\nhost = "h"\nsystem_id = "x"\n'
            "enabled = false\n",
            encoding="utf-8",
        )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tandem"):
        assert not await gateway.reload(config)

    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert "\n" not in errors[0].getMessage() and expected in errors[0].getMessage()
    assert gateway.numbers.resolve("+447911123456").operator.mno == "Island Mobile"
    assert route_of(gateway) == "island"


async def test_sighup_reloads_the_routes_of_a_running_daemon(tmp_path: Path) -> None:
    http_port = free_port()
    config = write_files(tmp_path, route("before"), http_port=http_port)
    key = create_key(config)
    process = daemon(tmp_path, config).start()
    url = f"http://127.0.0.1:{http_port}"
    headers = {"Authorization": f"Bearer {key}"}
    body = {"to": "+447911123456", "text": "hello"}
    try:
        await wait_http(url + "/openapi.json")
        async with aiohttp.ClientSession(headers=headers) as session:

            async def route_now() -> str:
                async with session.post(url + "/v1/messages", json=body) as response:
                    assert response.status == 202
                    return str((await response.json())["route"])

            assert await route_now() == "before"
            write_files(tmp_path, route("after"), http_port=http_port)
            process.popen.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

            async def reloaded() -> bool:
                return await route_now() == "after"

            await wait_for(reloaded, "SIGHUP to reload the routes", interval=0.05)

            config.write_text(config.read_text() + "\n[[routes]\n", encoding="utf-8")
            process.popen.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            await wait_for(
                lambda: "reload failed" in process.output(), "the log line for the bad file"
            )
            assert await route_now() == "after"
            assert process.running()
    finally:
        process.stop()
    failures = [line for line in process.output().splitlines() if "reload failed" in line]
    assert len(failures) == 1 and "tandem.toml" in failures[0]


async def test_tandem_reload_asks_the_daemon_and_prints_what_changed_or_why_not(
    tmp_path: Path,
) -> None:
    import subprocess

    from tests.daemon_processes import ROOT, TANDEM

    http_port = free_port()
    config = write_files(tmp_path, route("before"), http_port=http_port)
    process = daemon(tmp_path, config).start()

    def tandem_reload() -> subprocess.CompletedProcess[str]:
        argv = [*TANDEM, "reload", "-c", str(config)]
        return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)

    try:
        await wait_http(f"http://127.0.0.1:{http_port}/openapi.json")
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace('name = "before"', 'name = "after"'), encoding="utf-8")
        done = await asyncio.to_thread(tandem_reload)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"reloaded {config}") and "1 routes" in done.stdout

        # A key the model does not know: refused whole, the reason names file and key.
        config.write_text(text + "\n[http]\nwindow = 3\n", encoding="utf-8")
        done = await asyncio.to_thread(tandem_reload)
        assert done.returncode == 2 and "refused, nothing changed" in done.stderr
        # The daemon's own check of a file the command cannot see wrong: a route to a link
        # that is disabled loads, and only the daemon refuses it.
        config.write_text(
            text.replace('targets = ["carrier"]', 'targets = ["carrier", "spare"]')
            + '[[links]]\ntype = "smpp"\nname = "spare"\nhost = "127.0.0.1"\n'
            'system_id = "x"\nenabled = false\n',
            encoding="utf-8",
        )
        done = await asyncio.to_thread(tandem_reload)
        assert done.returncode == 1, done.stdout
        assert f"{config}: routes: targets links that are disabled: spare" in done.stderr
        assert process.running()
    finally:
        process.stop()
    assert "reload failed, the running config stays" in process.output()


async def test_a_reload_brings_new_keywords_sender_groups_and_opt_out_settings(
    gateway: Gateway, tmp_path: Path
) -> None:
    assert gateway.keywords.match("ARRET") is None
    assert gateway.optout_policy.enabled
    config = write_files(tmp_path, route("island", ["Island Mobile"]))
    config.write_text(
        config.read_text(encoding="utf-8")
        + '[keywords]\nopt_out = ["STOP", "ARRET"]\n'
        + '[[sender_groups]]\nname = "shop"\nsenders = ["Shop", "ShopNews"]\n'
        + '[optouts]\nenabled = false\notp_exempt = ["Verify"]\nsync_seconds = 9.0\n',
        encoding="utf-8",
    )
    assert await gateway.reload(config)
    found = gateway.keywords.match("arret")
    assert found is not None and found.keyword == "ARRET"
    group = gateway.optouts.groups.group_of("shopnews")
    assert group is not None and group.name == "shop"
    assert not gateway.optout_policy.enabled and gateway.optout_policy.otp_exempt
    # The sync period is set when the task starts: named as waiting for a restart.
    report = gateway.last_reload
    assert report is not None and report.needs_restart == ["optouts.sync_seconds"]
    assert gateway.config.optouts.sync_seconds == 1.0


async def test_a_reload_brings_new_default_key_limits_and_callback_settings(
    tmp_path: Path,
) -> None:
    from gateway.keys import create_key as mint

    http_port = free_port()
    config = write_files(tmp_path, route("island", ["Island Mobile"]), http_port=http_port)
    running = Gateway(load_config(config))
    await running.start()
    try:
        key = (await mint(running.message_store, "default-limits")).secret  # type: ignore[arg-type]
        url = f"http://127.0.0.1:{http_port}/v1/otp/otp_{'0' * 20}"
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as session:

            async def statuses(count: int) -> list[int]:
                found = []
                for _ in range(count):
                    async with session.get(url) as response:
                        found.append(response.status)
                return found

            assert await statuses(3) == [404, 404, 404]  # [http] default: 50 per second
            text = config.read_text(encoding="utf-8")
            config.write_text(
                text.replace("[http]\n", "[http]\nrequests_per_second = 1.0\n").replace(
                    "[http]\n", '[http]\ncallback_events = "all"\n'
                ),
                encoding="utf-8",
            )
            assert await running.reload(config)
            # The key has no limit of its own: the new default applies at once.
            assert await statuses(3) == [404, 429, 429]
        api = running.http_api
        callbacks = getattr(api, "callbacks", None)
        assert callbacks is not None and callbacks.events == "all"
        report = running.last_reload
        assert report is not None and "http settings" in report.changes
    finally:
        await running.stop()
