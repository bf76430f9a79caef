"""Modem links in the daemon, over real ptys against the emulator: what a message goes through
on a SIM (parts, TP-MR, status reports in the one status model), and what the daemon does when a
modem fails (unplug, silence, a wrong PIN, a SIM at its daily cap).

Every wait is for a condition, bounded by a generous timeout: a busy machine is slow, not failing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dlr.callback import verify
from dlr.status import MessageStatus, SegmentStatus
from gateway.app import Gateway
from gateway.config import TandemConfig, default_config_text, parse_config
from gateway.inbound.model import Concat, ConcatScheme, InboundPart
from gateway.intake import IntakeRefusal, MessageRequest
from gateway.links import LinkState, ModemLink
from gateway.links.modem import correlation_key
from gateway.messages import Channel
from gateway.queue import RetryPolicy
from gateway.store.base import MessageRecord
from modems.emulator import EmulatedModem, ModemSettings
from modems.emulator_io import PtyModem
from modems.tpdu import Address, SmsDeliver, split_text_user_data
from smpp.segmentation import Concatenation
from tests.daemon_processes import free_port
from tests.test_inbound import Receiver
from tests.waiting import wait_for

DESTINATION = "+447911123456"
THREE_PART_TEXT = ("Your appointment at the clinic is confirmed. " * 9)[:400]


@dataclass
class Pool:
    gateway: Gateway
    modems: dict[str, PtyModem] = field(default_factory=dict)

    def link(self, name: str) -> ModemLink:
        link = self.gateway.links[name]
        assert isinstance(link, ModemLink)
        return link

    def sent_to(self, name: str) -> list[str]:
        """Texts of what reached modem `name` (one entry per part)."""
        return [sent.submit.user_data.text for sent in self.modems[name].modem.sent]

    async def send(self, text: str = "hello", to: str = DESTINATION) -> str:
        request = MessageRequest(account="acme", channel=Channel.HTTP, to=to, text=text)
        prepared = await self.gateway.intake.accept([request])
        return prepared[0].message.id

    async def record(self, message_id: str) -> MessageRecord:
        record = await self.gateway.message_store.get(message_id)
        assert record is not None
        return record

    async def wait_status(self, message_id: str, status: MessageStatus) -> MessageRecord:
        return await self._wait_record(
            message_id, lambda record: record.message.status is status, f"status {status}"
        )

    async def wait_segments(self, message_id: str, status: SegmentStatus) -> MessageRecord:
        return await self._wait_record(
            message_id,
            lambda record: (
                bool(record.segments) and all(s.status is status for s in record.segments)
            ),
            f"every segment {status}",
        )

    async def _wait_record(
        self, message_id: str, holds: Callable[[MessageRecord], bool], what: str
    ) -> MessageRecord:
        seen: list[MessageRecord] = []

        async def reached() -> bool:
            seen[:] = [await self.record(message_id)]
            return holds(seen[0])

        def last_seen() -> str:
            record = seen[0]
            parts = [(s.index, s.status, s.link) for s in record.segments]
            return f"{message_id}: {what} (it is {record.message.status}: {parts})"

        await wait_for(reached, last_seen, interval=0.02)
        return seen[0]

    async def wait_state(self, name: str, state: LinkState) -> None:
        await wait_for(lambda: self.link(name).state is state, f"link {name} {state.value}")


def modem_link(name: str, device: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "modem",
        "name": name,
        "device": device,
        "messages_per_minute": None,
        "reconnect_initial": 0.1,
        "reconnect_max": 0.5,
        "reset_wait": 0.3,
        **fields,
    }


@pytest.fixture
async def pools(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await pools({"a": ModemSettings(...), ...}, links={"a": {...}}, route={...})`: emulated
    modems on ptys (stable links under tmp_path, like /dev/serial/by-id) and a Gateway whose
    modem links open them, all stopped after the test."""
    created: list[Pool] = []

    async def make(
        modems: dict[str, ModemSettings],
        *,
        links: dict[str, dict[str, Any]] | None = None,
        route: dict[str, Any] | None = None,
        wait_up: bool = True,
        **sections: Any,
    ) -> Pool:
        emulators: dict[str, PtyModem] = {}
        for name, settings in modems.items():
            emulator = PtyModem(EmulatedModem(settings), tmp_path / f"usb-Tandem_{name}-if00")
            emulator.plug()
            emulators[name] = emulator
        config = TandemConfig.model_validate(
            {
                "data_dir": str(tmp_path / "data"),
                "smpp_server": {"enabled": False},
                "http": {"enabled": False},
                "store": {"writer": "thread"},
                "links": [
                    modem_link(name, emulator.device, **(links or {}).get(name, {}))
                    for name, emulator in emulators.items()
                ],
                "routes": [
                    {"name": "sims", "priority": 1, "targets": list(modems), **(route or {})}
                ],
                **sections,
            }
        )
        gateway = Gateway(config, retry=RetryPolicy(base=0.2, cap=1.0))
        pool = Pool(gateway, emulators)
        created.append(pool)
        await gateway.start()
        if wait_up:
            for name in modems:
                await pool.wait_state(name, LinkState.UP)
        return pool

    yield make
    for pool in created:
        await pool.gateway.stop()
        for emulator in pool.modems.values():
            emulator.close()


def quick(**fields: Any) -> ModemSettings:
    return ModemSettings(**{"report_delay": 0.3, **fields})


async def test_single_and_multipart_sends_get_their_own_status_reports(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools({"sim": quick()})
    emulator = pool.modems["sim"].modem
    emulator._next_reference = 254  # the three parts take TP-MR 254, 255 and 0: the wrap

    single = await pool.send("Your code is 1234")
    await wait_for(lambda: len(emulator.sent) == 1, "the single part to go")
    emulator.settings.report_status = 0x41  # the next reports: incompatible destination
    multipart = await pool.send(THREE_PART_TEXT, to="+447400123456")
    await wait_for(lambda: len(emulator.sent) == 4, "the three parts to go")
    emulator.settings.report_status = 0x00

    delivered = await pool.wait_status(single, MessageStatus.DELIVERED)
    await pool.wait_status(multipart, MessageStatus.UNDELIVERABLE)  # at its first failed part
    failed = await pool.wait_segments(multipart, SegmentStatus.UNDELIVERABLE)
    assert [s.carrier_id for s in delivered.segments] == [correlation_key(254, DESTINATION)]
    assert [(s.index, s.total) for s in failed.segments] == [(0, 3), (1, 3), (2, 3)]
    assert [s.carrier_id for s in failed.segments] == [
        correlation_key(mr, "447400123456") for mr in (255, 0, 1)
    ]
    assert all(s.status is SegmentStatus.UNDELIVERABLE for s in failed.segments)
    # The handset gets the text back whole, from parts cut like an SMPP link's.
    assert "".join(pool.sent_to("sim")[1:]) == THREE_PART_TEXT
    assert pool.link("sim").stats.receipts == 4
    assert pool.link("sim").stats.parts_submitted == 4
    # Stored reports (+CDSI) are deleted from the SIM once recorded, not before.
    await wait_for(lambda: not emulator.storage, "the stored reports to be deleted")


async def test_a_reused_tp_mr_goes_to_the_newest_part_under_it(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools({"sim": quick(report_delay=60.0)})
    emulator = pool.modems["sim"].modem
    first = await pool.send("first")
    await wait_for(lambda: len(emulator.sent) == 1, "the first to go")
    emulator._next_reference = 0  # the modem restarted its count (a reset does that)
    second = await pool.send("second")
    await pool.wait_status(second, MessageStatus.SUBMITTED)
    assert emulator.sent[1].message_reference == emulator.sent[0].message_reference == 0

    report = emulator._timers[-1].report  # the one report the SC would send for TP-MR 0
    emulator._timers.clear()
    emulator._deliver_report(report)
    pool.modems["sim"].poke()
    await pool.wait_status(second, MessageStatus.DELIVERED)
    assert (await pool.record(first)).message.status is MessageStatus.SUBMITTED


async def test_temporary_status_reports_stay_intermediate(pools: Callable[..., Any]) -> None:
    pool: Pool = await pools({"sim": quick(report_status=0x20)})  # congestion, still trying
    message_id = await pool.send("on its way")
    record = await pool.wait_status(message_id, MessageStatus.ENROUTE)
    assert record.segments[0].status is SegmentStatus.ENROUTE


async def test_cms_errors_are_temporary_or_permanent_by_the_table(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools({"sim": quick()})
    emulator = pool.modems["sim"].modem
    emulator.fail_next_sends(38)  # network out of order: sent again after the backoff
    retried = await pool.send("again")
    await pool.wait_status(retried, MessageStatus.DELIVERED)
    assert (await pool.record(retried)).message.attempts >= 1

    emulator.fail_next_sends(1)  # unassigned number: the message is refused for good
    refused = await pool.send("never")
    record = await pool.wait_status(refused, MessageStatus.FAILED)
    assert "+CMS ERROR 1 (unassigned number)" in (record.message.last_error or "")


async def test_a_wrong_pin_stops_the_link_without_a_second_try(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools(
        {"sim": quick(pin="1234")}, links={"sim": {"pin": "9999"}}, wait_up=False
    )
    await pool.wait_state("sim", LinkState.STOPPED)
    await asyncio.sleep(1.0)  # several reconnect delays: nothing tries again
    assert pool.modems["sim"].modem.pin_attempts == ["9999"]
    assert pool.link("sim").state is LinkState.STOPPED
    assert "refused the configured PIN" in pool.link("sim").stats.sim_state


async def test_the_right_pin_is_entered_once_and_the_link_comes_up(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools({"sim": quick(pin="1234")}, links={"sim": {"pin": "1234"}})
    assert pool.modems["sim"].modem.pin_attempts == ["1234"]
    stats = pool.link("sim").stats
    assert (stats.sim_state, stats.registration, stats.operator) == ("ready", "home", "Tandem Sim")
    assert stats.signal_dbm == -113 + 2 * 20


async def test_unplug_fails_over_to_the_next_modem_and_back_after_replug(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools({"first": quick(), "second": quick()})
    before = await pool.send("before the unplug")
    await pool.wait_status(before, MessageStatus.DELIVERED)
    assert pool.sent_to("first") == ["before the unplug"]

    pool.modems["first"].unplug()
    await pool.wait_state("first", LinkState.DOWN)
    during = [await pool.send(f"during {n}") for n in range(3)]
    for message_id in during:
        await pool.wait_status(message_id, MessageStatus.DELIVERED)
    assert pool.sent_to("second") == [f"during {n}" for n in range(3)]

    pool.modems["first"].plug()  # the same /dev/serial/by-id path, a new pty
    await pool.wait_state("first", LinkState.UP)
    after = await pool.send("after the replug")
    await pool.wait_status(after, MessageStatus.DELIVERED)
    assert pool.sent_to("first") == ["before the unplug", "after the replug"]
    assert pool.link("first").stats.opens >= 2


async def test_a_silent_modem_is_reset_with_the_configured_command(
    pools: Callable[..., Any],
) -> None:
    settings = {"command_timeout": 0.3, "signal_interval": 0.2, "reset_command": "AT+CFUN=1,1"}
    pool: Pool = await pools({"sim": quick()}, links={"sim": settings})
    emulator = pool.modems["sim"].modem
    emulator.go_silent()
    await wait_for(lambda: emulator.resets == 1, "the reset command")
    assert "AT+CFUN=1,1" in emulator.commands
    await pool.wait_state("sim", LinkState.UP)
    message_id = await pool.send("after the reset")
    await pool.wait_status(message_id, MessageStatus.DELIVERED)
    assert pool.link("sim").stats.resets == 1


async def test_the_daily_cap_moves_traffic_to_the_next_sim_of_the_pool(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools(
        {"first": quick(), "second": quick()},
        links={"first": {"daily_cap": 2}, "second": {"daily_cap": 3}},
    )
    sent = [await pool.send(f"message {n}") for n in range(5)]
    for message_id in sent:
        await pool.wait_status(message_id, MessageStatus.DELIVERED)
    assert len(pool.sent_to("first")) == 2
    assert len(pool.sent_to("second")) == 3
    await pool.wait_state("first", LinkState.CAPPED)
    await pool.wait_state("second", LinkState.CAPPED)
    assert pool.link("first").stats.sends_today == 2

    waiting = await pool.send("tomorrow")  # every SIM is at its cap: it waits, not fails
    await asyncio.sleep(0.5)
    assert (await pool.record(waiting)).message.status is MessageStatus.QUEUED

    # A capped SIM that comes back from an unplug is still capped, not "up" for the day.
    pool.modems["first"].unplug()
    await pool.wait_state("first", LinkState.DOWN)
    pool.modems["first"].plug()
    await pool.wait_state("first", LinkState.CAPPED)
    await asyncio.sleep(0.3)
    assert len(pool.sent_to("first")) == 2


async def test_an_even_pool_spreads_a_burst_across_sims_by_their_caps(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools(
        {"a": quick(), "b": quick(), "c": quick()},
        links={"a": {"daily_cap": 40}, "b": {"daily_cap": 80}, "c": {"daily_cap": 40}},
        route={"strategy": "even"},
    )
    requests = [
        MessageRequest(account="acme", channel=Channel.HTTP, to=DESTINATION, text=f"burst {n}")
        for n in range(16)
    ]
    accepted = await pool.gateway.intake.accept(requests)  # one burst: placed before any goes
    for prepared in accepted:
        await pool.wait_status(prepared.message.id, MessageStatus.DELIVERED)
    # Shares of the caps stay level: the large SIM carries twice the others.
    assert [len(pool.sent_to(name)) for name in "abc"] == [4, 8, 4]
    assert [pool.link(name).sent_today() for name in "abc"] == [4, 8, 4]


async def test_the_builtin_default_sends_through_the_smsc_and_the_emulated_modem(
    tmp_path: Path,
) -> None:
    """What `make run` starts, on free ports and a private data directory: +254 numbers go
    through the emulated modem in the daemon, the others through the SMSC simulator."""
    data = tmp_path / "data"
    text = (
        default_config_text()
        .replace('"data/modem-sim-0"', f'"{data}/modem-sim-0"')
        .replace('data_dir = "data"', f'data_dir = "{data}"')
        .replace("port = 2775", f"port = {free_port()}")
        .replace("port = 2776", f"port = {free_port()}")
        .replace("port = 8080", f"port = {free_port()}")
        .replace('writer = "process"', 'writer = "thread"')
    )
    gateway = Gateway(parse_config(text, "default"))
    await gateway.start()
    try:
        pool = Pool(gateway)
        await pool.wait_state("modem", LinkState.UP)
        await wait_for(lambda: gateway.links["simulator"].state is LinkState.UP, "the SMPP bind")
        by_modem = await pool.send("Habari", to="+254712345678")
        by_smsc = await pool.send("Hello", to="+447400123456")
        modem_record = await pool.wait_status(by_modem, MessageStatus.DELIVERED)
        smsc_record = await pool.wait_status(by_smsc, MessageStatus.DELIVERED)
        assert [s.link for s in modem_record.segments] == ["modem"]
        assert [s.link for s in smsc_record.segments] == ["simulator"]
    finally:
        await gateway.stop()
    assert not (data / "modem-sim-0").exists()  # the emulated modem went with the daemon


async def test_a_stop_hands_back_the_message_the_sims_pace_still_holds(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools({"sim": quick()}, links={"sim": {"messages_per_minute": 1.0}})
    first = await pool.send("now")
    await pool.wait_status(first, MessageStatus.DELIVERED)
    held = await pool.send("in a minute")  # the SIM's pace holds it for a minute
    await wait_for(lambda: not pool.link("sim")._idle.is_set(), "the link to take it")
    await pool.link("sim").stop(drain_seconds=0.1)
    assert pool.link("sim").stats.handed_back == 1
    record = await pool.record(held)
    assert (record.message.status, record.message.attempts) == (MessageStatus.QUEUED, 0)
    assert pool.sent_to("sim") == ["now"]


class MoRecorder:
    """Sits in front of the inbound handler and keeps a copy of each part it is handed."""

    def __init__(self, receive: Callable[[InboundPart], Awaitable[None]]) -> None:
        self.parts: list[InboundPart] = []
        self._receive = receive

    def receive(self, part: InboundPart) -> Awaitable[None]:
        self.parts.append(part)
        return self._receive(part)


@pytest.mark.parametrize("indications", ["stored", "direct"])
async def test_mos_by_cmti_and_cmt_reach_the_inbound_path_part_by_part_joined_by_the_gateway(
    pools: Callable[..., Any], indications: str
) -> None:
    pool: Pool = await pools(
        {"sim": quick()}, links={"sim": {"indications": indications, "number": "+254712000001"}}
    )
    recorder = MoRecorder(pool.gateway.inbound.receive)
    pool.gateway.inbound.receive = recorder.receive  # type: ignore[method-assign]
    pty = pool.modems["sim"]
    direct = indications == "direct"
    pty.modem.inject_mo("STOP", originator="+254712345678", direct=direct)
    long_text = "Naomba kubadilisha miadi yangu ya kliniki hadi Ijumaa asubuhi. " * 4
    assert pty.modem.inject_mo(long_text, originator="+254712345678", direct=direct) == 2
    pty.modem.inject_mo("Zdravo 👋", originator="Clinic", direct=direct)
    # A handset that numbers its parts with a 16-bit reference, parts arriving out of order.
    wide_text = "Habari za asubuhi, daktari. " * 9
    wide = split_text_user_data(wide_text, concatenation=Concatenation.UDH16, reference=0x1234)
    assert len(wide) == 2
    for user_data in reversed(wide):
        deliver = SmsDeliver(Address.parse("+254712345679"), datetime.now(UTC), user_data)
        pty.modem.inject_pdu(deliver.encode(), direct=direct)
    pty.poke()
    await wait_for(lambda: len(recorder.parts) == 6, "six MO parts")
    stop, first, second, emoji, wide_second, wide_first = recorder.parts
    assert (stop.text, stop.source, stop.destination, stop.source_ton) == (
        "STOP",
        "254712345678",
        "254712000001",
        1,
    )
    assert stop.concat is None
    # Each part as it came, with its place, as an SMPP carrier's parts are.
    assert first.concat is not None and second.concat is not None
    assert (first.concat.total, first.concat.sequence, second.concat.sequence) == (2, 1, 2)
    assert first.concat.reference == second.concat.reference
    assert first.concat.scheme is ConcatScheme.UDH8 and first.link == "sim"
    assert (first.text or "") + (second.text or "") == long_text
    assert wide_first.concat == Concat(0x1234, 2, 1, ConcatScheme.UDH16)
    assert wide_second.concat == Concat(0x1234, 2, 2, ConcatScheme.UDH16)
    assert (emoji.text, emoji.source, emoji.source_ton, emoji.data_coding) == (
        "Zdravo 👋",
        "Clinic",
        5,
        8,
    )
    assert emoji.carrier_timestamp is not None
    # The gateway joined them, once: four MOs kept, two of them from two parts each.
    stats = pool.gateway.inbound.stats
    await wait_for(lambda: stats.messages == 4, "four MOs kept")
    assert (stats.parts, stats.reassembled, stats.parts_timed_out) == (6, 2, 0)
    # Stored copies go once kept (a lone part once held); direct ones were never stored.
    await wait_for(lambda: not pty.modem.storage, "the stored MOs to be deleted")
    assert pool.gateway.stats.mo_received == 6


async def test_a_restart_keeps_the_sims_count_of_the_day(
    pools: Callable[..., Any], tmp_path: Path
) -> None:
    pool: Pool = await pools({"sim": quick()}, links={"sim": {"daily_cap": 3}})
    for n in range(2):
        await pool.wait_status(await pool.send(f"before {n}"), MessageStatus.DELIVERED)
    config = pool.gateway.config
    await pool.gateway.stop()

    again = Gateway(config, retry=RetryPolicy(base=0.2, cap=1.0))
    await again.start()
    try:
        restarted = Pool(again, pool.modems)
        await restarted.wait_state("sim", LinkState.UP)
        assert restarted.link("sim").sent_today() == 2
        await restarted.wait_status(await restarted.send("third"), MessageStatus.DELIVERED)
        await restarted.wait_state("sim", LinkState.CAPPED)  # 3 today: the cap, restart or not
        assert len(restarted.sent_to("sim")) == 3
    finally:
        await again.stop()


SIM_NUMBER = "254712000001"
SUBSCRIBER = "254712345678"


@pytest.mark.parametrize("indications", ["stored", "direct"])
async def test_mos_on_a_sim_reach_a_webhook_and_stop_opts_out_with_the_reply_over_the_sim(
    pools: Callable[..., Any], indications: str
) -> None:
    async with Receiver() as receiver:
        pool: Pool = await pools(
            {"sim": quick()},
            links={"sim": {"number": "+" + SIM_NUMBER, "indications": indications}},
            egress={"allow": ["127.0.0.1"], "ports": [receiver.port]},
            inbound={
                "routes": [
                    {
                        "name": "clinic",
                        "to": [SIM_NUMBER],
                        "webhook": f"http://127.0.0.1:{receiver.port}/mo",
                        "webhook_secret": "clinic-secret",
                    }
                ],
                "replies": [{"kind": "opt_out", "text": "Umejiondoa. Tuma START kurudi."}],
            },
        )
        pty = pool.modems["sim"]
        long_text = "Naomba kubadilisha miadi yangu ya kliniki hadi Ijumaa asubuhi. " * 4
        direct = indications == "direct"
        parts = pty.modem.inject_mo(long_text, originator="+" + SUBSCRIBER, direct=direct)
        assert parts == 2  # +CMTI (stored) or +CMT (direct), one indication per part
        pty.poke()
        await wait_for(lambda: bool(receiver.got), "the webhook")
        ((body, raw, signature),) = receiver.got
        assert (body["text"], body["from"], body["to"]) == (long_text, SUBSCRIBER, SIM_NUMBER)
        assert body["parts"] == 2  # joined by the gateway, not by the link
        assert verify("clinic-secret", raw, signature, time.time())
        stats = pool.gateway.inbound.stats
        assert (stats.parts, stats.parts_held, stats.reassembled) == (2, 1, 1)
        assert pool.gateway.store is not None
        (kept,) = await pool.gateway.store.list_inbound(number=SIM_NUMBER)
        assert kept.row.part_count == 2 and kept.row.text == long_text

        pty.modem.inject_mo("STOP", originator="+" + SUBSCRIBER, direct=True)  # +CMT
        pty.poke()
        await wait_for(lambda: pool.gateway.optouts.blocks(SUBSCRIBER, SIM_NUMBER), "opt-out")
        # The confirmation goes back from the SIM's number, over the SIM itself.
        await wait_for(lambda: "Umejiondoa. Tuma START kurudi." in pool.sent_to("sim"), "the reply")
        with pytest.raises(IntakeRefusal) as refused:
            await pool.gateway.intake.accept(
                [
                    MessageRequest(
                        account="clinic",
                        channel=Channel.HTTP,
                        to="+" + SUBSCRIBER,
                        sender=SIM_NUMBER,
                        text="Reminder",
                    )
                ]
            )
        assert refused.value.code == "recipient_opted_out"
        await wait_for(lambda: not pty.modem.storage, "the stored MO to be deleted")


class HeldMo:
    """In front of the inbound handler: each part is kept as usual, but the link hears it was
    kept only once `release` is set."""

    def __init__(self, receive: Callable[[InboundPart], Awaitable[None]]) -> None:
        self.parts: list[InboundPart] = []
        self.release = asyncio.Event()
        self._receive = receive

    def receive(self, part: InboundPart) -> Awaitable[None]:
        self.parts.append(part)
        kept = self._receive(part)

        async def when_released() -> None:
            await self.release.wait()
            await kept

        return when_released()


async def test_a_routed_mo_is_acknowledged_with_cnma_only_once_it_is_kept(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools(
        {"sim": quick()}, links={"sim": {"indications": "direct", "number": "+" + SIM_NUMBER}}
    )
    held = HeldMo(pool.gateway.inbound.receive)
    pool.gateway.inbound.receive = held.receive  # type: ignore[method-assign]
    pty = pool.modems["sim"]
    assert pty.modem.service == 1  # the link asked for +CSMS phase 2+
    pty.modem.inject_mo("Hello clinic", originator="+" + SUBSCRIBER, direct=True)
    pty.modem.inject_mo("second one", originator="+" + SUBSCRIBER, direct=True)
    pty.poke()
    await wait_for(lambda: len(held.parts) == 1, "the routed MO")
    await asyncio.sleep(0.3)
    assert pty.modem.acknowledgements == [] and len(held.parts) == 1  # the next waits too
    held.release.set()
    await wait_for(lambda: len(pty.modem.acknowledgements) == 2, "both +CNMA")
    assert [a.accepted for a in pty.modem.acknowledgements] == [True, True]
    assert [part.text for part in held.parts] == ["Hello clinic", "second one"]
    assert pool.gateway.store is not None
    kept = await pool.gateway.store.list_inbound(number=SIM_NUMBER)
    assert sorted(record.row.text or "" for record in kept) == ["Hello clinic", "second one"]
    assert pool.link("sim").stats.routed_acknowledged == 2
    assert pty.modem.ack_timeouts == 0 and pty.modem.redelivered == 0


async def test_a_routed_mo_the_store_failed_to_keep_is_refused_and_kept_when_offered_again(
    pools: Callable[..., Any],
) -> None:
    from gateway.store.base import StoreError

    pool: Pool = await pools(
        {"sim": quick(redelivery_delay=0.3)},
        links={"sim": {"indications": "direct", "number": "+" + SIM_NUMBER}},
    )
    store: Any = pool.gateway.inbound.store
    record = store.record_inbound
    failures = [StoreError("disk full")]

    async def failing_once(*args: Any, **kwargs: Any) -> int:
        if failures:
            raise failures.pop()
        return int(await record(*args, **kwargs))

    store.record_inbound = failing_once
    pty = pool.modems["sim"]
    pty.modem.inject_mo("kept the second time", originator="+" + SUBSCRIBER, direct=True)
    pty.poke()
    await wait_for(lambda: len(pty.modem.acknowledgements) == 2, "a refusal, then an RP-ACK")
    refused, accepted = pty.modem.acknowledgements
    assert (refused.accepted, refused.failure_cause) == (False, 0xFF)  # RP-ERROR, TP-FCS FF
    assert accepted.accepted and pty.modem.redelivered == 1
    stats = pool.link("sim").stats
    assert (stats.routed_rejected, stats.routed_acknowledged) == (1, 1)
    (kept,) = await store.list_inbound(number=SIM_NUMBER)
    assert kept.row.text == "kept the second time"
    assert pool.gateway.inbound.stats.store_failures == 1 and pty.modem.ack_timeouts == 0


async def test_routed_status_reports_are_acknowledged_once_recorded(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools({"sim": quick()}, links={"sim": {"indications": "direct"}})
    message_id = await pool.send("with a report")
    await pool.wait_status(message_id, MessageStatus.DELIVERED)
    pty = pool.modems["sim"]
    await wait_for(lambda: len(pty.modem.acknowledgements) == 1, "the +CDS answer")
    (answer,) = pty.modem.acknowledgements
    assert answer.routed.kind == "+CDS" and answer.accepted


async def test_a_part_the_network_offers_again_after_the_join_is_not_delivered_twice(
    pools: Callable[..., Any],
) -> None:
    pool: Pool = await pools(
        {"sim": quick()},
        links={"sim": {"indications": "direct", "number": "+" + SIM_NUMBER}},
        inbound={"reassembly_timeout": 30.0},
    )
    pty = pool.modems["sim"]
    text = "Naomba kubadilisha miadi yangu ya kliniki hadi Ijumaa asubuhi. " * 4
    parts = split_text_user_data(text, reference=77)
    delivers = [
        SmsDeliver(Address.parse("+" + SUBSCRIBER), datetime.now(UTC), user_data).encode()
        for user_data in parts
    ]
    for deliver in delivers:
        pty.modem.inject_pdu(deliver, direct=True)
    pty.poke()
    stats = pool.gateway.inbound.stats
    await wait_for(lambda: stats.messages == 1, "the joined MO")
    pty.modem.inject_pdu(delivers[1], direct=True)  # its RP-ACK was lost, say
    pty.poke()
    await wait_for(lambda: len(pty.modem.acknowledgements) == 3, "the copy's answer")
    assert pty.modem.acknowledgements[-1].accepted  # answered, so the network stops
    assert stats.duplicate_parts == 1 and stats.parts_held == 1 and stats.messages == 1


async def test_an_unreadable_stored_pdu_is_logged_in_hex_counted_and_deleted(
    pools: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    pool: Pool = await pools({"sim": quick()}, links={"sim": {"poll_interval": 0.2}})
    pty = pool.modems["sim"]
    caplog.set_level("WARNING", logger="tandem.modem")
    pty.modem.inject_pdu(b"\x04\x0b\x91\x44")  # an SMS-DELIVER cut after its address type
    pty.poke()
    link = pool.link("sim")
    await wait_for(lambda: link.stats.unreadable == 1, "the unreadable PDU")
    await wait_for(lambda: not pty.modem.storage, "the SIM to be emptied")
    polls = pty.modem.commands.count("AT+CMGL=4")
    await wait_for(lambda: pty.modem.commands.count("AT+CMGL=4") >= polls + 2, "two more polls")
    assert link.stats.unreadable == 1  # not read again
    (line,) = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert "040B9144" in line and "storage index 0" in line
    # Readable messages after it still arrive.
    pty.modem.inject_mo("after the garbage", originator="+" + SUBSCRIBER)
    pty.poke()
    await wait_for(lambda: link.stats.mos == 1, "the next MO")


async def test_an_unreadable_routed_pdu_is_logged_and_acknowledged(
    pools: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    pool: Pool = await pools({"sim": quick()}, links={"sim": {"indications": "direct"}})
    pty = pool.modems["sim"]
    caplog.set_level("WARNING", logger="tandem.modem")
    pty.modem.inject_pdu(b"\x04\x0b\x91\x44", direct=True)
    pty.poke()
    await wait_for(lambda: len(pty.modem.acknowledgements) == 1, "the answer")
    assert pty.modem.acknowledgements[0].accepted  # a retry would not decode either
    assert pool.link("sim").stats.unreadable == 1
    assert any("040B9144" in r.getMessage() for r in caplog.records)
