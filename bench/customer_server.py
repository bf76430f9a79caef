"""The Tandem side of the SMPP-in benches (`--serve`): the Gateway of a config file with its
customer SMPP server, running until SIGINT or SIGTERM.

Gateway modules are imported inside the functions: the orchestrating process imports this
module too and never starts a Gateway itself.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.smpp_server import CustomerSmppServer


@asynccontextmanager
async def running_gateway(
    config_path: Path, *, tune: bool = True
) -> AsyncIterator[tuple[Gateway, CustomerSmppServer]]:
    """The Gateway of `config_path`, started, and its customer SMPP server; stopped after.
    `tune`: the interpreter settings `tandem run` applies after start-up."""
    from gateway.app import Gateway, tune_interpreter_for_daemon
    from gateway.config import load_config
    from gateway.smpp_server import start_customer_server

    gateway = Gateway(load_config(config_path))
    await gateway.start()
    try:
        if tune:
            tune_interpreter_for_daemon()
        server = await start_customer_server(gateway)
        yield gateway, server
    finally:
        await gateway.stop()


def stop_signal() -> asyncio.Event:
    """An event set at the first SIGINT or SIGTERM (the orchestrator's `stop`)."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    return stopped
