"""A modem port over a real pty against the emulator: the serial adapter (pyserial-asyncio-fast),
the AT channel, the session and the emulator, with real bytes through the kernel's pty.

Every wait is for a condition (an event, a future), bounded by a generous timeout so a busy
machine is slow, not failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modems.emulator import EmulatedModem, ModemSettings
from modems.emulator_io import PtyModem, serve_tcp_modem
from modems.errors import FailureKind
from modems.serial_link import ModemPort, ModemSupervisor
from modems.session import (
    MessageReceived,
    MessageSent,
    NotReady,
    Ready,
    SendFailed,
    SessionEvent,
    SessionSettings,
    StatusReportReceived,
    Stopped,
    Unresponsive,
)
from modems.tpdu import Address, SmsSubmit, split_text_user_data
from tests.waiting import wait_for

WAIT = 20.0


class Recorder:
    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: SessionEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [event for event in self.events if isinstance(event, kind)]

    async def until(self, kind: type, count: int = 1) -> list:  # type: ignore[type-arg]
        async def wait() -> None:
            while len(self.of(kind)) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT)
        return self.of(kind)


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[PtyModem]:
    pty_modem = PtyModem(
        EmulatedModem(ModemSettings(report_delay=0.2)), tmp_path / "usb-Tandem_Modem-if00"
    )
    pty_modem.plug()
    yield pty_modem
    pty_modem.close()


async def open_port(
    emulator: PtyModem, settings: SessionSettings | None = None
) -> tuple[ModemPort, Recorder]:
    recorder = Recorder()
    port = ModemPort(emulator.device, settings, listener=recorder)
    await port.open()
    return port, recorder


def submits(text: str, reference: int = 0) -> list[bytes]:
    return [
        SmsSubmit(Address.parse("+447700900456"), part, status_report_request=True).encode()
        for part in split_text_user_data(text, reference=reference)
    ]


async def test_single_and_multipart_sends_with_correlated_status_reports(
    emulator: PtyModem,
) -> None:
    port, recorder = await open_port(emulator)
    await asyncio.wait_for(port.ready.wait(), WAIT)
    single = await asyncio.wait_for(port.send("single", submits("hello")), WAIT)
    multi = await asyncio.wait_for(port.send("multi", submits("€" * 200, 7)), WAIT)
    assert single == MessageSent("single", (0,))
    assert multi == MessageSent("multi", (1, 2, 3))
    reports = await recorder.until(StatusReportReceived, 4)
    by_reference = {r.report.message_reference: r for r in reports}
    assert sorted(by_reference) == [0, 1, 2, 3]
    assert all(r.report.status == 0 for r in reports)
    port.delete([r.storage_index for r in reports if r.storage_index is not None])
    texts = ["".join(s.submit.user_data.text for s in emulator.modem.sent[1:])]
    assert texts == ["€" * 200]
    port.close()


async def test_mo_by_cmti_and_by_cmt_multipart_too(emulator: PtyModem) -> None:
    port, recorder = await open_port(emulator)
    await asyncio.wait_for(port.ready.wait(), WAIT)
    long_text = "Stored and announced by +CMTI. " * 8
    emulator.modem.inject_mo(long_text, "+447700900111")
    emulator.poke()
    (stored,) = await recorder.until(MessageReceived)
    assert stored.text == long_text and len(stored.storage_indexes) == 2
    port.delete(stored.storage_indexes)

    emulator.modem.cnmi = (2, 2, 0, 1, 0)  # route MO straight to the host: +CMT
    routed_text = "Routed by +CMT 😀 " * 6
    emulator.modem.inject_mo(routed_text, "Clinic", direct=True)
    emulator.poke()
    routed = (await recorder.until(MessageReceived, 2))[1]
    assert routed.text == routed_text and routed.originator == "Clinic"
    assert routed.storage_indexes == ()

    await wait_for(lambda: not emulator.modem.storage, "the modem's storage emptied")
    port.close()


async def test_wrong_pin_stops_the_port_without_a_second_try(tmp_path: Path) -> None:
    emulator = PtyModem(EmulatedModem(ModemSettings(pin="1234")))
    emulator.plug()
    try:
        port, _ = await open_port(emulator, SessionSettings(pin="9999"))
        await asyncio.wait_for(port.closed.wait(), WAIT)
        assert port.stopped is not None and port.stopped.fatal
        assert "PIN" in port.stopped.reason
        assert emulator.modem.pin_attempts == ["9999"]
        assert not port.ready.is_set()
    finally:
        emulator.close()


async def test_a_silent_modem_is_detected(emulator: PtyModem) -> None:
    settings = SessionSettings(signal_interval=0.3, command_timeout=1.0)
    port, recorder = await open_port(emulator, settings)
    await asyncio.wait_for(port.ready.wait(), WAIT)
    emulator.modem.go_silent()
    (unresponsive,) = await recorder.until(Unresponsive)
    assert unresponsive.timeouts == 2
    port.close()


async def test_cms_error_38_and_500_are_temporary_failures(emulator: PtyModem) -> None:
    port, _ = await open_port(emulator)
    await asyncio.wait_for(port.ready.wait(), WAIT)
    emulator.modem.fail_next_sends(38, 500)
    first = await asyncio.wait_for(port.send("a", submits("x")), WAIT)
    second = await asyncio.wait_for(port.send("b", submits("y")), WAIT)
    assert isinstance(first, SendFailed) and first.cms_error == 38
    assert isinstance(second, SendFailed) and second.cms_error == 500
    assert first.kind is second.kind is FailureKind.TEMPORARY
    port.close()


async def test_unplug_closes_the_port_and_removes_the_device(emulator: PtyModem) -> None:
    port, _ = await open_port(emulator)
    await asyncio.wait_for(port.ready.wait(), WAIT)
    device = Path(emulator.device)
    assert device.is_symlink()
    emulator.unplug()
    await asyncio.wait_for(port.closed.wait(), WAIT)
    assert port.lost_because is not None and "port lost" in port.lost_because
    assert not device.exists()
    emulator.plug()  # replugged: the same stable path, a new pty
    again, _ = await open_port(emulator)
    await asyncio.wait_for(again.ready.wait(), WAIT)
    again.close()


async def test_a_network_modem_server_by_socket_url() -> None:
    modem = EmulatedModem(ModemSettings(report_delay=0.1))
    server = await serve_tcp_modem(modem)
    port_number = server.sockets[0].getsockname()[1]
    try:
        recorder = Recorder()
        port = ModemPort(f"socket://127.0.0.1:{port_number}", listener=recorder)
        await port.open()
        await asyncio.wait_for(port.ready.wait(), WAIT)
        sent = await asyncio.wait_for(port.send("tcp", submits("over the network")), WAIT)
        assert sent == MessageSent("tcp", (0,))
        (report,) = await recorder.until(StatusReportReceived)
        assert report.report.message_reference == 0
        port.close()
    finally:
        server.close()
        await server.wait_closed()


async def start_supervisor(
    device: str, settings: SessionSettings | None = None, reset_wait: float = 10.0
) -> tuple[ModemSupervisor, Recorder, asyncio.Task[Stopped | None]]:
    recorder = Recorder()
    supervisor = ModemSupervisor(
        device, settings, listener=recorder, backoff=(0.05, 0.1, 0.2), reset_wait=reset_wait
    )
    return supervisor, recorder, asyncio.create_task(supervisor.run())


async def test_supervisor_reopens_after_unplug_and_replug(emulator: PtyModem) -> None:
    supervisor, recorder, running = await start_supervisor(emulator.device)
    try:
        await recorder.until(Ready)
        emulator.unplug()
        await recorder.until(Stopped)
        with pytest.raises(NotReady):
            await supervisor.send("while-unplugged", submits("x"))
        await wait_for(  # the device path is gone
            lambda: any("cannot open" in s.reason for s in recorder.of(Stopped)), "a failed open"
        )
        emulator.plug()
        await recorder.until(Ready, 2)
        sent = await asyncio.wait_for(supervisor.send("after", submits("back")), WAIT)
        assert isinstance(sent, MessageSent)
        assert any("cannot open" in s.reason for s in recorder.of(Stopped))
    finally:
        supervisor.close()
        assert await asyncio.wait_for(running, WAIT) is None


async def test_supervisor_resets_a_silent_modem(emulator: PtyModem) -> None:
    settings = SessionSettings(signal_interval=0.3, command_timeout=1.0)
    supervisor, recorder, running = await start_supervisor(
        emulator.device, settings, reset_wait=0.1
    )
    try:
        await recorder.until(Ready)
        emulator.modem.go_silent()
        await recorder.until(Unresponsive)
        await recorder.until(Ready, 2)  # reset with AT+CFUN=1,1, reopened, started again
        assert "AT+CFUN=1,1" in emulator.modem.commands
        assert emulator.modem.resets == 1 and supervisor.resets == 1
    finally:
        supervisor.close()
        await asyncio.wait_for(running, WAIT)


async def test_supervisor_stops_for_good_after_a_wrong_pin() -> None:
    emulator = PtyModem(EmulatedModem(ModemSettings(pin="1234")))
    emulator.plug()
    try:
        supervisor, recorder, running = await start_supervisor(
            emulator.device, SessionSettings(pin="4321")
        )
        fatal = await asyncio.wait_for(running, WAIT)
        assert fatal is not None and fatal.fatal
        await asyncio.sleep(0.3)  # longer than every backoff: nothing tries again
        assert emulator.modem.pin_attempts == ["4321"]
        assert supervisor.opens == 1
        assert not recorder.of(Ready)
    finally:
        emulator.close()


async def test_supervisor_resets_a_modem_that_does_not_answer_its_start(
    emulator: PtyModem,
) -> None:
    emulator.modem.go_silent()  # hung before the link ever spoke to it
    settings = SessionSettings(command_timeout=0.5)
    supervisor, recorder, running = await start_supervisor(
        emulator.device, settings, reset_wait=0.1
    )
    try:
        await recorder.until(Ready)
        assert any(stop.unresponsive for stop in recorder.of(Stopped))
        assert emulator.modem.resets == 1 and supervisor.resets == 1
    finally:
        supervisor.close()
        await asyncio.wait_for(running, WAIT)


async def test_a_send_whose_caller_gave_up_does_not_hold_its_key(emulator: PtyModem) -> None:
    port, _ = await open_port(emulator)
    await asyncio.wait_for(port.ready.wait(), WAIT)
    emulator.modem.go_silent()
    abandoned = asyncio.create_task(port.send("k", submits("first")))
    await asyncio.sleep(0.05)
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    emulator.modem.go_silent(False)
    retry = asyncio.create_task(port.send("k", submits("again")))  # no "already being sent"
    await asyncio.sleep(0.05)
    assert not retry.done() or not isinstance(retry.exception(), ValueError)
    retry.cancel()
    port.close()
