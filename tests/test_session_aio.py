"""smpp.aio over real TCP sockets on 127.0.0.1: our client role against our server role."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from smpp.aio import (
    BindError,
    SmppClient,
    SmppConnection,
    SmppHandler,
    listen_for_outbind,
    open_smpp_connection,
    serve_smpp,
)
from smpp.constants import CommandStatus
from smpp.pdu import (
    AlertNotification,
    BindReceiver,
    DeliverSm,
    DeliverSmResp,
    Outbind,
    Pdu,
    SubmitSm,
    SubmitSmResp,
)
from smpp.session import Role, SessionConfig, SessionState, StateForbidsError, WindowFullError
from tests.waiting import WAIT, wait_for

FAST = SessionConfig(window=4, response_timeout=2.0, enquire_link_interval=None, bind_timeout=5.0)


class Smsc(SmppHandler):
    """Accepts esme/secret; answers submit_sm with a message id, or parks it when `hold` is set."""

    instances: list[Smsc]

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.submitted: list[SubmitSm] = []
        self.parked: list[SubmitSm] = []
        self.connection: SmppConnection | None = None
        self.lost: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, connection: SmppConnection) -> None:
        self.connection = connection

    def bind_requested(self, request: Pdu) -> int:
        ok = (
            getattr(request, "system_id", "") == "esme"
            and getattr(request, "password", "") == "secret"
        )
        return CommandStatus.ESME_ROK if ok else CommandStatus.ESME_RINVPASWD

    def request_received(self, request: Pdu) -> Pdu | None:
        assert isinstance(request, SubmitSm)
        self.submitted.append(request)
        if self.hold:
            self.parked.append(request)
            return None
        return request.response(message_id=f"id-{len(self.submitted)}")

    def connection_lost(self, reason: str | None) -> None:
        self.lost.set_result(reason)


ServerFactory = Callable[..., Awaitable[tuple[int, list[Smsc]]]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    servers: list[asyncio.Server] = []

    async def start(config: SessionConfig = FAST, hold: bool = False) -> tuple[int, list[Smsc]]:
        handlers: list[Smsc] = []

        def factory() -> Smsc:
            handlers.append(Smsc(hold))
            return handlers[-1]

        server = await serve_smpp(factory, "127.0.0.1", 0, config=config, system_id="tandem")
        servers.append(server)
        return server.sockets[0].getsockname()[1], handlers

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def bound_client(port: int, config: SessionConfig = FAST, **kwargs: object) -> SmppClient:
    client = SmppClient(config, **kwargs)  # type: ignore[arg-type]
    await client.connect("127.0.0.1", port)
    await client.bind("transceiver", "esme", "secret")
    return client


async def test_client_binds_submits_and_gets_the_servers_message_id(
    start_server: ServerFactory,
) -> None:
    port, handlers = await start_server()
    client = SmppClient(FAST)
    await client.connect("127.0.0.1", port)
    response = await client.bind("transceiver", "esme", "secret")
    assert getattr(response, "system_id", None) == "tandem"
    assert client.state is SessionState.BOUND_TRX
    answer = await client.submit(SubmitSm(destination_addr="4915112345678", short_message=b"hi"))
    assert isinstance(answer, SubmitSmResp)
    assert answer.message_id == "id-1"
    (smsc,) = handlers
    assert smsc.submitted[0].short_message == b"hi"
    assert smsc.connection is not None and smsc.connection.peer_system_id == "esme"
    await client.unbind()
    assert client.closed.done()
    assert await asyncio.wait_for(smsc.lost, WAIT) is None


async def test_wrong_password_raises_bind_error_with_the_servers_status(
    start_server: ServerFactory,
) -> None:
    port, _ = await start_server()
    client = SmppClient(FAST)
    await client.connect("127.0.0.1", port)
    with pytest.raises(BindError) as refused:
        await client.bind("transmitter", "esme", "wrong")
    assert refused.value.status == CommandStatus.ESME_RINVPASWD
    assert client.state is SessionState.OPEN
    with pytest.raises(StateForbidsError):
        await client.submit(SubmitSm())
    client.close()
    await client.closed


async def test_submit_waits_for_a_window_slot_and_nowait_refuses_when_full(
    start_server: ServerFactory,
) -> None:
    port, handlers = await start_server(hold=True)
    client = await bound_client(port)
    first = [client.send_request_nowait(SubmitSm(short_message=b"%d" % i)) for i in range(4)]
    with pytest.raises(WindowFullError):
        client.send_request_nowait(SubmitSm())
    fifth = asyncio.ensure_future(client.submit(SubmitSm(short_message=b"5")))
    (smsc,) = handlers
    await wait_for(lambda: len(smsc.parked) >= 4, "four submits at the SMSC")
    await asyncio.sleep(0.05)  # room for a fifth to show
    assert not fifth.done() and len(smsc.submitted) == 4  # held back by the window
    assert smsc.connection is not None
    smsc.connection.respond(smsc.parked[0].response(message_id="m0"))
    await wait_for(lambda: len(smsc.parked) >= 5, "the fifth submit at the SMSC")
    assert smsc.parked[4].short_message == b"5"
    for parked in smsc.parked[1:]:
        smsc.connection.respond(parked.response(message_id="m"))
    responses = await asyncio.gather(*first, fifth)
    assert [r.command_status for r in responses] == [0] * 5
    assert getattr(responses[0], "message_id", None) == "m0"
    await client.unbind()


async def test_unanswered_submit_fails_with_timeout_error(start_server: ServerFactory) -> None:
    port, _ = await start_server(hold=True)
    config = SessionConfig(window=4, response_timeout=0.2, enquire_link_interval=None)
    client = await bound_client(port, config)
    with pytest.raises(TimeoutError):
        await client.submit(SubmitSm())
    assert client.connection.session.window_used == 0
    client.close()


async def test_server_pushes_deliver_sm_and_gets_the_status_the_client_chose(
    start_server: ServerFactory,
) -> None:
    port, handlers = await start_server()
    seen: list[bytes] = []

    async def on_deliver(request: Pdu) -> Pdu:
        assert isinstance(request, DeliverSm)
        seen.append(request.short_message)
        await asyncio.sleep(0)  # an answer that is computed later still goes out
        return request.response(command_status=CommandStatus.ESME_RX_T_APPN)

    client = await bound_client(port, request_handler=on_deliver)
    (smsc,) = handlers
    assert smsc.connection is not None
    answer = await smsc.connection.request(DeliverSm(short_message=b"mo text"))
    assert isinstance(answer, DeliverSmResp)
    assert answer.command_status == CommandStatus.ESME_RX_T_APPN
    assert seen == [b"mo text"]
    await client.unbind()


async def test_responses_and_requests_of_one_read_reach_the_application_in_wire_order(
    start_server: ServerFactory,
) -> None:
    """An SMSC writes submit_sm_resp A, deliver_sm A, submit_sm_resp B, deliver_sm B in one
    write: the response callbacks and the request handler run in that order, so a receipt never
    overtakes the result of its own submit."""
    port, handlers = await start_server(hold=True)
    seen: list[str] = []

    def on_deliver(request: Pdu) -> Pdu:
        assert isinstance(request, DeliverSm)
        seen.append(f"deliver {request.short_message.decode()}")
        return request.response()

    client = await bound_client(port, request_handler=on_deliver)
    submits = [SubmitSm(destination_addr="4915112345678", short_message=n) for n in (b"A", b"B")]
    for submit in submits:
        future = client.send_request_nowait(submit)
        name = submit.short_message.decode()
        future.add_done_callback(lambda _, name=name: seen.append(f"response {name}"))
    (smsc,) = handlers
    await wait_for(lambda: len(smsc.parked) >= 2, "both submits at the SMSC")
    connection = smsc.connection
    assert connection is not None
    for parked in smsc.parked:  # queued in one turn: they leave in one write
        connection.respond(parked.response(message_id=parked.short_message.decode()))
        connection.send_request_nowait(DeliverSm(short_message=parked.short_message))
    await wait_for(lambda: len(seen) >= 4, "both responses and both deliver_sm")
    assert seen == ["response A", "deliver A", "response B", "deliver B"]
    await client.unbind()


async def test_server_unbind_closes_both_ends(start_server: ServerFactory) -> None:
    port, handlers = await start_server()
    client = await bound_client(port)
    (smsc,) = handlers
    assert smsc.connection is not None
    await asyncio.wait_for(smsc.connection.unbind(), WAIT)
    await asyncio.wait_for(client.closed, WAIT)
    with pytest.raises(ConnectionError):
        await client.submit(SubmitSm())


async def test_server_closes_a_client_that_never_binds(start_server: ServerFactory) -> None:
    port, handlers = await start_server(SessionConfig(bind_timeout=0.1))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed by the server
    assert await handlers[0].lost == "not bound in time"
    writer.close()


async def test_idle_link_is_kept_alive_by_enquire_link_then_unbound_for_inactivity(
    start_server: ServerFactory,
) -> None:
    # The inactivity limit leaves a loaded machine room: the check at 0.25 s may come late.
    config = SessionConfig(enquire_link_interval=0.05, inactivity_timeout=1.0, response_timeout=1)
    port, handlers = await start_server(config)
    client = await bound_client(port, config)
    await asyncio.sleep(0.25)
    assert client.state is SessionState.BOUND_TRX  # enquire_links kept it up past 5 intervals
    await asyncio.wait_for(client.closed, WAIT)
    assert client.connection.close_reason is None  # a graceful unbind, not a failure
    assert await handlers[0].lost is None


async def test_outbind_over_sockets_the_esme_binds_as_receiver_and_takes_deliver_sm() -> None:
    class Esme(SmppHandler):
        def __init__(self) -> None:
            self.invitations: list[Pdu] = []
            self.delivered: list[bytes] = []
            self.connection: SmppConnection | None = None

        def connection_made(self, connection: SmppConnection) -> None:
            self.connection = connection

        def outbind_received(self, request: Pdu) -> Pdu | None:
            self.invitations.append(request)
            return BindReceiver(system_id="esme", password="secret")

        def request_received(self, request: Pdu) -> Pdu | None:
            assert isinstance(request, DeliverSm)
            self.delivered.append(request.short_message)
            return request.response()

    esmes: list[Esme] = []

    def esme_factory() -> Esme:
        esmes.append(Esme())
        return esmes[-1]

    listener = await listen_for_outbind(esme_factory, "127.0.0.1", 0, config=FAST)
    try:
        port = listener.sockets[0].getsockname()[1]
        smsc = Smsc()
        connection = await open_smpp_connection(
            Role.SERVER, smsc, "127.0.0.1", port, config=FAST, system_id="tandem"
        )
        await connection.send_request_nowait(Outbind(system_id="esme", password="secret"))
        await wait_for(lambda: connection.state is SessionState.BOUND_RX, "the outbound bind")
        assert connection.peer_system_id == "esme"
        answer = await connection.request(DeliverSm(short_message=b"waiting for you"))
        assert answer.command_status == CommandStatus.ESME_ROK
        (esme,) = esmes
        assert [getattr(i, "system_id", None) for i in esme.invitations] == ["esme"]
        assert esme.delivered == [b"waiting for you"]
        assert esme.connection is not None
        assert esme.connection.state is SessionState.BOUND_RX
        with pytest.raises(StateForbidsError):  # bound as a receiver: it may not submit
            esme.connection.send_request_nowait(SubmitSm())
        await connection.unbind()
    finally:
        listener.close()
        await listener.wait_closed()


async def test_alert_notification_and_a_failing_handler_do_not_break_the_connection(
    start_server: ServerFactory,
) -> None:
    port, handlers = await start_server()

    def failing(request: Pdu) -> Pdu:
        raise RuntimeError("handler bug")

    client = await bound_client(port, request_handler=failing)
    (smsc,) = handlers
    assert smsc.connection is not None
    await smsc.connection.request(AlertNotification(source_addr="491510"))
    answer = await smsc.connection.request(DeliverSm(short_message=b"x"))
    assert answer.command_status == CommandStatus.ESME_RSYSERR  # the handler's failure, reported
    answer = await client.submit(SubmitSm())
    assert answer.command_status == CommandStatus.ESME_ROK
    await client.unbind()


async def test_client_and_server_speak_smpp_over_tls(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a throwaway certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    command += " -days 1 -subj /CN=localhost"
    command += " -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    server = await serve_smpp(Smsc, "127.0.0.1", 0, ssl=server_tls, config=FAST)
    try:
        client = SmppClient(FAST)
        await client.connect("127.0.0.1", server.sockets[0].getsockname()[1], ssl=client_tls)
        await client.bind("transmitter", "esme", "secret")
        answer = await client.submit(SubmitSm(short_message=b"over tls"))
        assert getattr(answer, "message_id", None) == "id-1"
        await client.unbind()
    finally:
        server.close()
        await server.wait_closed()
