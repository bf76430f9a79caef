"""`/admin/` paths need the admin token from any address, so a reverse proxy on the gateway host
(whose requests arrive from 127.0.0.1) does not make them public; the token file is the
daemon's own (mode 0600) and survives restarts."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.http.admin_token import (
    admin_token_path,
    load_or_create_admin_token,
    read_admin_token,
)
from tests.test_http_harness import Daemon, running_daemon


@asynccontextmanager
async def reverse_proxy(upstream: str) -> AsyncIterator[str]:
    """A forwarding proxy on 127.0.0.1, as nginx's `proxy_pass` would be on the same host."""

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        headers["X-Forwarded-For"] = "203.0.113.9"  # the internet client it speaks for
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                upstream + request.path_qs,
                headers=headers,
                data=await request.read(),
            ) as answer,
        ):
            body = await answer.read()
            return web.Response(
                status=answer.status,
                body=body,
                headers={"Content-Type": answer.headers.get("Content-Type", "text/plain")},
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def get_links(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/admin/links", headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def token_of(daemon: Daemon) -> str:
    return read_admin_token(admin_token_path(daemon.gateway.config))


async def test_admin_links_needs_the_token_even_from_loopback(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        status, body = await get_links(daemon.url)
        assert (status, body["code"]) == (401, "unauthorized")
        status, body = await get_links(daemon.url, daemon.key.secret)  # an API key is not it
        assert status == 401
        status, body = await get_links(daemon.url, token_of(daemon))
        assert status == 200
        assert [link["name"] for link in body["links"]] == ["sim"]  # type: ignore[attr-defined]


async def test_a_reverse_proxy_on_the_same_host_does_not_make_admin_links_public(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as daemon, reverse_proxy(daemon.url) as public:
        status, body = await get_links(public)
        assert (status, body["code"]) == (401, "unauthorized")
        status, _ = await get_links(public, "guess")
        assert status == 401
        status, _ = await get_links(public, token_of(daemon))  # the operator, through it
        assert status == 200


async def test_wrong_admin_tokens_are_limited_per_address(tmp_path: Path) -> None:
    async with running_daemon(
        tmp_path, http={"auth_failures_burst": 3, "auth_failures_per_second": 0.1}
    ) as daemon:
        statuses = [(await get_links(daemon.url, f"guess{n}"))[0] for n in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        status, _ = await get_links(daemon.url, token_of(daemon))
        assert status == 200  # the right token still passes


async def test_the_token_file_is_0600_whatever_the_umask_and_kept_across_restarts(
    tmp_path: Path,
) -> None:
    previous = os.umask(0)
    try:
        async with running_daemon(tmp_path) as daemon:
            path = admin_token_path(daemon.gateway.config)
            first = token_of(daemon)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 43
    assert load_or_create_admin_token(path) == first


async def test_route_explain_asks_the_daemon_with_the_token_it_reads_from_the_file(
    tmp_path: Path,
) -> None:
    from gateway.route_cli import ask_daemon

    async with running_daemon(tmp_path) as daemon:
        config = daemon.gateway.config.model_copy(deep=True)
        config.http.port = daemon.api.port
        live = await asyncio.to_thread(ask_daemon, config)
        assert live.links is not None and "sim" in live.links, live.problem
        config.http.admin_token_file = tmp_path / "missing.token"
        live = await asyncio.to_thread(ask_daemon, config)
        assert live.links is None
        assert live.problem is not None and "cannot read the admin token" in live.problem
