"""The inbound handler: every MO a link receives, from its first part to its destinations.

Owns `InboundHandler` (its counters: `gateway.inbound.stats`). For each `InboundPart` a link
hands the daemon:
1. a part from a number on the inbound block list is kept as BLOCKED and goes nowhere;
2. a part of several is held (kept in the store) until its message is whole: reassembly happens
   once, here, with `[inbound]`'s timeout and bounds; parts whose whole never arrives are
   delivered as the parts they are when it times out (and after a restart, held parts wait
   again); a part offered again after its message was joined (a carrier resends a part
   whose answer it lost) is answered but not delivered a second time, for one reassembly
   window after the join;
3. the message is matched against the opt-out keywords and routed (`gateway.inbound.routing`);
4. it is kept in the store (with the webhook delivery it is owed, in the same transaction), and,
   for an SMPP account, queued in that account's durable outbox in the same commit;
5. an opt-out or opt-in keyword changes the opt-out list (durable, audited);
6. only then is the link's awaitable done, so the carrier is answered: a store failure answers
   a temporary error and the carrier offers the MO again;
7. after that: the event sink is told, the webhook is posted, keyword replies are sent through
   the normal MT path. A reply is owed in the store from the MO's own transaction until it is
   stored as an MT, so a restart in between sends it then (`_resend_owed`); at most once per
   MO: one already stored (found by its reference) is not sent again.

Never does: protocol work (links convert their PDUs), SQL (the store), HTTP (`webhooks`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from dlr.callback import RetrySchedule
from gateway.config import InboundConfig
from gateway.egress import EgressPolicy
from gateway.events import EventKind, EventSinks, mo_payload
from gateway.inbound.model import InboundMessage, InboundPart
from gateway.inbound.routing import InboundRoute, InboundRouter, digits
from gateway.inbound.stats import InboundStats
from gateway.inbound.webhooks import WebhookSender
from gateway.intake import IntakeRefusal
from gateway.links.base import TemporarilyRefused
from gateway.optouts.keywords import KeywordClass, KeywordMatch, KeywordMatcher
from gateway.optouts.registry import OptOutRegistry
from gateway.optouts.senders import SenderGroups, sender_key
from gateway.store.base import InboundRecord, InboundRow, InboundState, InboundStore, StoreError
from gateway.store.inbound import parts_from_json, parts_to_json
from gateway.tasks import cancel_and_wait
from smpp.reassembly import ConcatInfo, ConcatPart, Reassembler

log = logging.getLogger("tandem.inbound")

TICK_SECONDS = 0.25
BLOCK_LIST_REFRESH_SECONDS = 2.0


class MoAccounts(Protocol):
    """SMPP accounts that take MOs (the customer SMPP server)."""

    def owner_of(self, number: str) -> str | None:
        """The account whose `mo_numbers` hold `number`, if any."""

    def has_room(self, account: str) -> bool:
        """False when the account's outbox is at its bound (the carrier is asked to retry)."""

    def deliver_mo(self, account: str, message: InboundMessage) -> Awaitable[None] | None:
        """Queue the MO for the account's binds; the awaitable is done once it is kept in the
        account's durable outbox. None: no such account is running."""


class ReplySender(Protocol):
    """Keyword replies through the normal MT path (`gateway.inbound.replies.KeywordReplies`)."""

    def owes(self, match: KeywordMatch, sender: str) -> bool:
        """Is a reply configured for this keyword sent to `sender`?"""

    async def sent_already(self, inbound_id: int) -> bool:
        """Is the reply to this MO stored as an MT already?"""

    async def __call__(
        self, message: InboundMessage, inbound_id: int, match: KeywordMatch, outcome: object
    ) -> bool:
        """Send the reply (the opt-out outcome a confirmation may pass, or None); True when
        intake accepted it. Raises `IntakeRefusal` when intake refused it."""


@dataclass(slots=True)
class _Held:
    part: InboundPart
    group: str
    row_id: int | None = None


def _group(part: InboundPart) -> str:
    concat = part.concat
    assert concat is not None
    return "\x1f".join(
        (part.link, part.source, part.destination, str(concat.reference), str(concat.total))
    )


class InboundHandler:
    """See the module docstring. `receive(part)` is `LinkSink.on_mo`."""

    def __init__(
        self,
        store: InboundStore,
        config: InboundConfig,
        *,
        events: EventSinks | None = None,
        egress: EgressPolicy | None = None,
        matcher: KeywordMatcher | None = None,
        groups: SenderGroups | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.events = events
        self.matcher = matcher
        self.groups = groups if groups is not None else SenderGroups()
        self.clock = clock
        self.stats = InboundStats()
        self.accounts: MoAccounts | None = None
        self.keyword_actions: OptOutRegistry | None = None  # what STOP and START change
        self.reply: ReplySender | None = None
        self.router = InboundRouter(config.routes, self._account_of)
        self.blocked: set[str] = set()
        self._parts = Reassembler(
            config.reassembly_timeout, config.reassembly_max_pending, config.reassembly_max_bytes
        )
        # Messages joined lately (group -> until when a part of it is a resend), oldest first,
        # at most `reassembly_max_pending` of them.
        self._joined: OrderedDict[str, float] = OrderedDict()
        self.webhooks = WebhookSender(
            store,
            self._webhook_route,
            schedule=RetrySchedule(
                initial_delay=config.webhook_retry_initial,
                max_delay=config.webhook_retry_max_delay,
                give_up_after=config.webhook_retry_for,
            ),
            timeout=config.webhook_timeout,
            egress=egress if egress is not None else EgressPolicy(),
            clock=clock,
            stats=self.stats,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._replying: set[int] = set()  # MOs whose reply is being sent now
        self._replies_owed = True  # the store may hold replies owed: look on the next tick
        # Which owed replies the tick sends: those of MOs from before this start (the ones
        # after it are sent by their own `_keep`, which may not have got to it yet) and
        # those refused for now since.
        self._started_at = clock()
        self._retry_replies: set[int] = set()

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh_block_list()
        restored = 0
        for record in await self.store.held_inbound():
            for part in parts_from_json(record.row.parts_json):
                if part.concat is None:
                    continue
                held = _Held(part, record.row.part_of or _group(part), record.id)
                self._add_part(held)
                restored += 1
        if restored:
            log.info("inbound: %d held MO parts wait for the rest of their messages", restored)
        await self.webhooks.start()
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            await cancel_and_wait(self._ticker)
            self._ticker = None
        await self.webhooks.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    async def refresh_block_list(self) -> None:
        self.blocked = {number for number, _, _ in await self.store.inbound_blocked()}

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _account_of(self, number: str) -> str | None:
        return self.accounts.owner_of(number) if self.accounts is not None else None

    def _webhook_route(self, name: str) -> InboundRoute | None:
        config = self.router.routes.get(name)
        if config is None:
            return None
        return InboundRoute(
            name, config.account, config.webhook, config.webhook_secret, config.event_sink
        )

    # --- intake -------------------------------------------------------------------------------

    def receive(self, part: InboundPart) -> Awaitable[None]:
        """Take one part; the awaitable is done once it is kept (and, when it completes a
        message, once that message is kept and handed on). Raises `TemporarilyRefused` when
        the account it goes to cannot take it now."""
        self.stats.parts += 1
        if digits(part.source) in self.blocked:
            self.stats.blocked += 1
            return self._take(InboundMessage.single(part), state=InboundState.BLOCKED)
        route = self.router.route(part.destination, part.text)
        accounts = self.accounts
        if (
            route is not None
            and route.account is not None
            and accounts is not None
            and not accounts.has_room(route.account)
        ):
            self.stats.refused_full += 1
            raise TemporarilyRefused(f"{route.account}: delivery queue full, MO refused")
        if part.is_part_of_several:
            held = _Held(part, _group(part))
            if self._resent_after_join(held.group):
                self.stats.duplicate_parts += 1
                concat = part.concat
                assert concat is not None
                log.info(
                    "MO part %d/%d from %s to %s on %s came again after its message was "
                    "joined: answered, not delivered again",
                    concat.sequence,
                    concat.total,
                    part.source,
                    part.destination,
                    part.link,
                )
                return self._spawn(_answered())
            whole = self._add_part(held)
            if whole is None:
                self.stats.parts_held += 1
                return self._spawn(self._hold(held))
            self.stats.reassembled += 1
            taken = self._take(whole, replaces=held.group)
            self._remember_joined(held.group, taken)
            return taken
        return self._take(InboundMessage.single(part))

    def _resent_after_join(self, group: str) -> bool:
        """True when `group`'s message was joined within the last reassembly window: every
        part of it was there, so this one is a copy."""
        until = self._joined.get(group)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._joined[group]
        return False

    def _remember_joined(self, group: str, taken: asyncio.Task[None]) -> None:
        self._joined.pop(group, None)
        self._joined[group] = time.monotonic() + self.config.reassembly_timeout
        while len(self._joined) > self.config.reassembly_max_pending:
            self._joined.popitem(last=False)

        def forget_unless_kept(task: asyncio.Task[None]) -> None:
            # Not kept: the carrier is answered with an error and offers the part again,
            # which must then count.
            if task.cancelled() or task.exception() is not None:
                self._joined.pop(group, None)

        taken.add_done_callback(forget_unless_kept)

    def _forget_old_joins(self, now: float) -> None:
        while self._joined:
            group, until = next(iter(self._joined.items()))
            if until > now:
                return
            del self._joined[group]

    def _add_part(self, held: _Held) -> InboundMessage | None:
        part = held.part
        concat = part.concat
        assert concat is not None
        info = ConcatInfo(concat.reference, concat.total, concat.sequence, 16)
        whole = self._parts.add(
            (part.link, part.source, part.destination),
            ConcatPart(info, part.payload, part.data_coding, held),
            time.monotonic(),
        )
        if whole is None:
            return None
        parts = []
        for each in whole.parts:
            assert isinstance(each.context, _Held)
            parts.append(each.context.part)
        return InboundMessage.joined(tuple(parts))

    async def _hold(self, held: _Held) -> None:
        part = held.part
        row = self._row(InboundMessage.single(part), InboundState.HELD, None, None)
        row = _with(row, part_of=held.group)
        try:
            held.row_id = await self.store.record_inbound(row)
        except StoreError as exc:
            self.stats.store_failures += 1
            raise TemporarilyRefused(f"keeping an MO part failed: {exc}") from exc

    def _match(self, message: InboundMessage, now: float | None = None) -> KeywordMatch | None:
        if self.matcher is None or message.text is None or not message.complete:
            return None
        sender = sender_key(message.destination)
        group = self.groups.group_of(sender)
        return self.matcher.match(
            message.text,
            sender=sender,
            group=group.name if group is not None else None,
            now=self.clock() if now is None else now,
        )

    def _row(
        self,
        message: InboundMessage,
        state: InboundState,
        route: InboundRoute | None,
        match: KeywordMatch | None,
    ) -> InboundRow:
        owes_webhook = state is InboundState.ROUTED and route is not None and route.webhook
        return InboundRow(
            state=state,
            link=message.link,
            source=message.source,
            destination=message.destination,
            data_coding=message.data_coding,
            text=message.text,
            payload=message.payload,
            parts_json=parts_to_json(message.parts),
            part_count=len(message.parts),
            complete=message.complete,
            received_at=message.received_at,
            carrier_timestamp=message.carrier_timestamp,
            keyword=match.keyword if match is not None else None,
            keyword_class=match.keyword_class.value if match is not None else None,
            lenient=match.lenient if match is not None else False,
            route=route.name if route is not None else None,
            webhook=route.name if owes_webhook and route is not None else None,
            webhook_next=self.clock() if owes_webhook else None,
        )

    def _take(
        self,
        message: InboundMessage,
        *,
        replaces: str | None = None,
        held_ids: tuple[int, ...] = (),
        state: InboundState | None = None,
    ) -> asyncio.Task[None]:
        """Route and hand on one message. The account's outbox place is taken now, in this
        turn, so the next MO sees it full; both writes are queued before either is awaited."""
        if state is InboundState.BLOCKED:
            route = None
            match = None
        else:
            route = self.router.route(message.destination, message.text)
            state = InboundState.ROUTED if route is not None else InboundState.UNMATCHED
            match = self._match(message) if message.complete else None
        handed: Awaitable[None] | None = None
        if route is not None and route.account is not None:
            if self.accounts is not None:
                handed = self.accounts.deliver_mo(route.account, message)
            if handed is None:
                self.stats.account_missing += 1
                log.warning(
                    "inbound route %s: account %s is not running", route.name, route.account
                )
            else:
                self.stats.to_accounts += 1
        return self._spawn(
            self._keep(
                message, route, match, state, replaces=replaces, held_ids=held_ids, handed=handed
            )
        )

    async def _keep(
        self,
        message: InboundMessage,
        route: InboundRoute | None,
        match: KeywordMatch | None,
        state: InboundState,
        *,
        replaces: str | None = None,
        held_ids: tuple[int, ...] = (),
        handed: Awaitable[None] | None = None,
    ) -> None:
        row = self._row(message, state, route, match)
        owes_reply = (
            match is not None
            and state is not InboundState.BLOCKED
            and self.reply is not None
            and self.reply.owes(match, message.destination)
        )
        if held_ids:
            kept: Awaitable[Any] = self.store.release_held(held_ids, row)
        else:
            kept = self.store.record_inbound(row, replaces=replaces, owes_reply=owes_reply)
        try:
            inbound_id = await kept
            if handed is not None:
                await handed
        except StoreError as exc:
            self.stats.store_failures += 1
            raise TemporarilyRefused(f"keeping an MO failed: {exc}") from exc
        if held_ids:
            inbound_id = held_ids[0]
        self.stats.messages += 1
        if state is InboundState.UNMATCHED:
            self.stats.unmatched += 1
            log.info(
                "MO on %s from %s to %s matched no inbound route (kept as %d)",
                message.link,
                message.source,
                message.destination,
                inbound_id,
            )
        elif state is InboundState.ROUTED:
            self.stats.routed += 1
        outcome: object = None
        if match is not None and state is not InboundState.BLOCKED:
            outcome = await self._keyword(message, inbound_id, match)
        # The carrier is answered once this returns; what follows does not hold it up.
        if state is InboundState.ROUTED and route is not None:
            self._hand_on(message, inbound_id, row, route)
        if owes_reply and match is not None:
            self._spawn(self._reply(message, inbound_id, match, outcome))

    async def _keyword(
        self, message: InboundMessage, inbound_id: int, match: KeywordMatch
    ) -> object:
        """Apply an opt-out or opt-in before the carrier is answered (durable, audited)."""
        actions = self.keyword_actions
        if match.keyword_class is KeywordClass.HELP:
            self.stats.keyword_help += 1
            return None
        if actions is None:
            return None
        from gateway.optouts.senders import InvalidOptOutNumber, number_key
        from gateway.store.base import OptOutVia

        try:
            number = number_key(message.source)
        except InvalidOptOutNumber:
            log.info(
                "MO %d: %r is not a number an opt-out can be kept for", inbound_id, message.source
            )
            return None
        source = f"link:{message.link} mo:{inbound_id}"
        try:
            if match.keyword_class is KeywordClass.OPT_OUT:
                self.stats.keyword_opt_outs += 1
                return await actions.opt_out(
                    number,
                    sender=message.destination,
                    all_senders=match.all_senders,
                    via=OptOutVia.KEYWORD,
                    keyword=match.keyword,
                    lenient=match.lenient,
                    source=source,
                )
            self.stats.keyword_opt_ins += 1
            return await actions.opt_in(
                number,
                sender=message.destination,
                via=OptOutVia.KEYWORD,
                keyword=match.keyword,
                source=source,
            )
        except StoreError as exc:
            self.stats.keyword_failures += 1
            raise TemporarilyRefused(f"recording the {match.keyword_class} failed: {exc}") from exc

    async def _reply(
        self, message: InboundMessage, inbound_id: int, match: KeywordMatch, outcome: object
    ) -> None:
        """Send the reply owed for an MO and settle what the store owes: once intake stored
        it, or refused it for good; a refusal for now (backlog full, store failure) leaves it
        owed, and a later tick sends it."""
        assert self.reply is not None
        self._replying.add(inbound_id)
        try:
            try:
                if await self.reply(message, inbound_id, match, outcome):
                    self.stats.replies += 1
            except IntakeRefusal as refusal:
                if refusal.retry_after is not None:
                    raise
                self.stats.replies_refused += 1
                log.warning(
                    "MO %d: the %s reply was refused: %s", inbound_id, match.keyword_class, refusal
                )
            await self.store.reply_settled(inbound_id)
        except (IntakeRefusal, StoreError) as exc:
            self._replies_owed = True
            self._retry_replies.add(inbound_id)
            log.warning(
                "MO %d: the %s reply stays owed (%s); sent again later",
                inbound_id,
                match.keyword_class,
                exc,
            )
        except Exception:
            self._replies_owed = True
            self._retry_replies.add(inbound_id)
            log.exception(
                "MO %d: the %s reply was not sent; it stays owed", inbound_id, match.keyword_class
            )
        finally:
            self._replying.discard(inbound_id)

    async def _resend_owed(self) -> None:
        """Send the replies the store still owes (a restart came between answering the carrier
        and storing the reply, or the reply was refused for now). A STOP's confirmation goes
        only while the opt-out it confirms holds, a START's only while nothing stops the
        sender; one already stored as an MT is not sent again."""
        self._replies_owed = False
        if self.reply is None:
            return
        for record in await self.store.replies_owed():
            if record.id in self._replying:
                continue
            if record.row.received_at >= self._started_at and record.id not in self._retry_replies:
                continue
            self._retry_replies.discard(record.id)
            row = record.row
            parts = parts_from_json(row.parts_json)
            message = (
                InboundMessage.joined(parts) if len(parts) > 1 else InboundMessage.single(parts[0])
            )
            match = self._match(message, now=row.received_at)
            outcome = self._still_holds(message, match) if match is not None else False
            if outcome is False or await self.reply.sent_already(record.id):
                await self.store.reply_settled(record.id)
                continue
            assert match is not None
            log.info("MO %d: sending the %s reply it is owed", record.id, match.keyword_class)
            await self._reply(message, record.id, match, outcome)

    def _still_holds(self, message: InboundMessage, match: KeywordMatch) -> object:
        """For an owed reply: the outcome its keyword still has (what a confirmation passes;
        None for HELP), or False when the reply no longer says the truth."""
        actions = self.keyword_actions
        if match.keyword_class is KeywordClass.HELP or actions is None:
            return None
        from gateway.optouts.registry import OptOutOutcome, scope_key
        from gateway.optouts.senders import InvalidOptOutNumber, number_key

        try:
            number = number_key(message.source)
        except InvalidOptOutNumber:
            return None
        if match.keyword_class is KeywordClass.OPT_IN:
            return None if not actions.blocks(number, message.destination) else False
        scope = actions.opt_out_scope(message.destination, all_senders=match.all_senders)
        if scope_key(*scope) not in actions.scope_keys_of(number):
            return False
        return OptOutOutcome((scope,), (True,))

    def _hand_on(
        self, message: InboundMessage, inbound_id: int, row: InboundRow, route: InboundRoute
    ) -> None:
        if row.webhook is not None:
            self.stats.to_webhooks += 1
            self.webhooks.owe(InboundRecord(inbound_id, row))
        if route.event_sink is not None and self.events is not None:
            payload = mo_payload(
                link=message.link,
                source=message.source,
                destination=message.destination,
                text=message.text,
                received_at=message.received_at,
                id=str(inbound_id),
                parts=len(message.parts),
                complete=message.complete,
                keyword=row.keyword,
                keyword_class=row.keyword_class,
            )
            if self.events.publish_to(
                route.event_sink, EventKind.MO, digits(message.destination), payload
            ):
                self.stats.to_event_sinks += 1
            else:
                self.stats.event_sink_missing += 1

    # --- timers -------------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        next_refresh = time.monotonic()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            self._forget_old_joins(now)
            for incomplete in self._parts.expire(now):
                for each in incomplete.parts:  # better the parts than nothing
                    held = each.context
                    assert isinstance(held, _Held)
                    self.stats.parts_timed_out += 1
                    self._give_up(held)
            try:
                if now >= next_refresh:
                    next_refresh = now + BLOCK_LIST_REFRESH_SECONDS
                    await self.refresh_block_list()
                    if self._replies_owed:
                        await self._resend_owed()
            except StoreError as exc:
                self._replies_owed = True
                log.warning("inbound: %s", exc)

    def _give_up(self, held: _Held) -> None:
        message = InboundMessage.single(held.part, complete=False)
        ids = (held.row_id,) if held.row_id is not None else ()
        self._take(message, held_ids=ids).add_done_callback(_log_failure)


async def _answered() -> None:
    """What a resent part waits for: nothing, it is answered at once."""


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("inbound: a part given up on was not handed on: %s", task.exception())


def _with(row: InboundRow, **changes: Any) -> InboundRow:
    import dataclasses

    return dataclasses.replace(row, **changes)
