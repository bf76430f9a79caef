"""The GSM modem emulator on its own: raw AT over a real pty, and `tandem sim modem`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import serial_asyncio_fast

from modems.emulator import EmulatedModem, ModemSettings
from modems.emulator_io import PtyModem
from modems.tpdu import (
    Address,
    SmsStatusReport,
    SmsSubmit,
    UserData,
    decode_from_network,
    split_service_centre,
    with_service_centre,
)
from smpp import gsm7
from tests.waiting import wait_for

WAIT = 20.0


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, until: bytes
) -> bytes:
    writer.write(data)
    received = b""
    while until not in received:
        received += await asyncio.wait_for(reader.read(1024), WAIT)
    return received


async def test_raw_at_over_the_pty() -> None:
    pty_modem = PtyModem(EmulatedModem(ModemSettings(pin="1234", report_delay=0.1)))
    device = pty_modem.plug()
    try:
        reader, writer = await serial_asyncio_fast.open_serial_connection(url=device)
        assert await exchange(reader, writer, b"AT\r", b"OK\r\n") == b"AT\r\r\nOK\r\n"  # echo
        assert await exchange(reader, writer, b"ATE0\r", b"OK\r\n") == b"ATE0\r\r\nOK\r\n"
        assert b"+CPIN: SIM PIN" in await exchange(reader, writer, b"AT+CPIN?\r", b"OK\r\n")
        await exchange(reader, writer, b"AT+CMEE=1\r", b"OK\r\n")
        for _ in range(3):
            answer = await exchange(reader, writer, b'AT+CPIN="0000"\r', b"\r\n")
            assert b"+CME ERROR: 16" in answer
        assert b"+CPIN: SIM PUK" in await exchange(reader, writer, b"AT+CPIN?\r", b"OK\r\n")
        assert pty_modem.modem.pin_attempts == ["0000"] * 3

        pty_modem.modem.sim_state = "READY"
        await exchange(reader, writer, b"AT+CNMI=2,1,0,1,0\r", b"OK\r\n")
        submit = SmsSubmit(
            Address.parse("+447700900456"),
            UserData(0, gsm7.encode("hi")),
            status_report_request=True,
        )
        tpdu = submit.encode()
        prompt = await exchange(reader, writer, f"AT+CMGS={len(tpdu)}\r".encode(), b"> ")
        assert prompt.endswith(b"> ")
        pdu = with_service_centre(tpdu).hex().upper().encode()
        answer = await exchange(reader, writer, pdu + b"\x1a", b"+CDS:")
        assert b"+CMGS: 0\r\n\r\nOK\r\n" in answer
        report_line = re.compile(rb"\+CDS: \d+\r\n([0-9A-F]+)\r\n")
        while not report_line.search(answer):
            answer += await asyncio.wait_for(reader.read(1024), WAIT)
        found = report_line.search(answer)
        assert found is not None
        report_hex = found.group(1)
        _, report_tpdu = split_service_centre(bytes.fromhex(report_hex.decode()))
        report = decode_from_network(report_tpdu)
        assert isinstance(report, SmsStatusReport) and report.message_reference == 0
        writer.close()
    finally:
        pty_modem.close()


def test_cmgs_with_a_wrong_length_is_refused() -> None:
    modem = EmulatedModem(ModemSettings(echo=False))
    modem.feed(b"AT+CMGS=12\r", 0.0)  # the TPDU below is 9 octets
    assert modem.outgoing() == b"\r\n> "
    tpdu = SmsSubmit(Address.parse("+1"), UserData(0, b"\x01")).encode()
    modem.feed(with_service_centre(tpdu).hex().encode() + b"\x1a", 0.0)
    assert modem.outgoing() == b"\r\n+CMS ERROR: 304\r\n"
    assert modem.sent == []


def test_tandem_sim_modem_makes_a_device_and_removes_it(tmp_path: Path) -> None:
    link = tmp_path / "modem0"
    tandem = Path(sys.executable).parent / "tandem"
    process = subprocess.Popen(
        [str(tandem), "sim", "modem", "--link", str(link), "--pin", "1234"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == f"emulated modem on {link}"
        assert link.is_symlink() and os.path.exists(os.readlink(link))

        async def ask() -> bytes:
            reader, writer = await serial_asyncio_fast.open_serial_connection(url=str(link))
            answer = await exchange(reader, writer, b"AT+CPIN?\r", b"OK\r\n")
            writer.close()
            return answer

        assert b"+CPIN: SIM PIN" in asyncio.run(ask())
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
    assert not link.exists() and not link.is_symlink()


def test_tandem_sim_modem_refuses_a_bad_option() -> None:
    tandem = Path(sys.executable).parent / "tandem"
    result = subprocess.run(
        [str(tandem), "sim", "modem", "--signal", "40"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "tandem: sim modem: --signal: must be 0-31"


async def test_raw_cnma_over_the_pty_holds_back_the_next_cmt_and_refuses_a_stray_one() -> None:
    modem = EmulatedModem(ModemSettings(echo=False, ack_timeout=WAIT, redelivery_delay=0.2))
    pty_modem = PtyModem(modem)
    device = pty_modem.plug()
    routed = re.compile(rb"\+CMT: ,\d+\r\n[0-9A-F]+\r\n")
    try:
        reader, writer = await serial_asyncio_fast.open_serial_connection(url=device)
        assert b"+CSMS: 1,1,1" in await exchange(reader, writer, b"AT+CSMS=1\r", b"OK\r\n")
        await exchange(reader, writer, b"AT+CNMI=2,2,0,1,0\r", b"OK\r\n")
        modem.inject_mo("one", direct=True)
        modem.inject_mo("two", direct=True)
        pty_modem.poke()
        first = b""
        while not routed.search(first):
            first += await asyncio.wait_for(reader.read(1024), WAIT)
        try:
            more = await asyncio.wait_for(reader.read(1024), 0.5)
        except TimeoutError:
            more = b""
        assert b"+CMT" not in more  # the second waits for the answer to the first
        second = await exchange(reader, writer, b"AT+CNMA\r", b"+CMT:")
        assert b"OK" in second
        refused = await exchange(reader, writer, b"AT+CNMA=2,3\r", b"> ")
        assert refused.endswith(b"> ")
        modem.settings.ack_timeout = 0.3  # the next offer: nobody answers it
        answer = await exchange(reader, writer, b"00FF00\x1a", b"OK\r\n")
        while not routed.search(answer):  # the network offers the refused one again
            answer += await asyncio.wait_for(reader.read(1024), WAIT)
        assert [(a.accepted, a.failure_cause) for a in modem.acknowledgements] == [
            (True, None),
            (False, 0xFF),
        ]
        await wait_for(lambda: modem.ack_timeouts > 0, "the offer to time out", interval=0.05)
        assert modem.cnmi[1] == 0 and modem.cnmi[3] == 0  # routing turned off
        stray = await exchange(reader, writer, b"AT+CNMA\r", b"+CMS ERROR: 340\r\n")
        assert b"+CMS ERROR: 340" in stray
        writer.close()
    finally:
        pty_modem.close()
