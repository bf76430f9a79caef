"""The opt-out list every MT is checked against: in memory for an O(1) check, the store the truth.

Owns `OptOutRegistry` (the list in memory, loaded from the store at start, written through on
every change, and kept in step with changes other writers make: the CLI, another daemon on the
same store; on a store that announces changes as they commit (`OptOutFeed`, PostgreSQL: several
nodes), within milliseconds, with the periodic sync as the safety net) and `OptOutStats`.
Never does: keyword matching (`gateway.optouts.keywords`), replies (the inbound handler), or
refusing messages (`gateway.optouts.policy`).

Scopes: an opt-out is kept per number under one key per scope, "s:<sender>", "g:<group>" or "*"
(every sender). `blocks(number, sender)` is one dict lookup for the number (most numbers have
no opt-out at all) and, for a number that has some, a set test against the three keys that
would stop that sender.

Ordering (why an opt-out committed before a submit is accepted always blocks it): an opt-out is
put into memory BEFORE its write is queued to the store, and taken out again only if that write
fails. Intake checks the list and queues its accept write in one turn of the event loop, with no
await between, and the store commits writes in the order they were queued. So a submit either
checked the list after the opt-out was in memory (refused), or queued its accept ahead of the
opt-out's write, in which case the accept commits first (or in the same transaction): the
opt-out was not yet committed when that submit was accepted. An opt-in goes the other way round:
it leaves memory only AFTER its removal is committed, so a failed START never lets a message
through. Both directions err towards blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.optouts.senders import SenderGroups, sender_key
from gateway.store.base import (
    OptOutAction,
    OptOutChange,
    OptOutFeed,
    OptOutNotice,
    OptOutScope,
    OptOutStore,
    OptOutVia,
)
from gateway.tasks import cancel_and_wait

log = logging.getLogger("tandem.optouts")

ALL_KEY = "*"
LOAD_PAGE = 50_000  # opt-outs read per query at start-up
# Distinct senders whose keys are remembered; a customer cycling sender ids cannot grow it.
_SENDER_CACHE_MAX = 10_000


def scope_key(scope: OptOutScope, target: str) -> str:
    if scope is OptOutScope.ALL:
        return ALL_KEY
    return ("s:" if scope is OptOutScope.SENDER else "g:") + target


def key_scope(key: str) -> tuple[OptOutScope, str]:
    if key == ALL_KEY:
        return OptOutScope.ALL, ""
    return (OptOutScope.SENDER if key[0] == "s" else OptOutScope.GROUP), key[2:]


@dataclass(slots=True)
class OptOutStats:
    """Counters of the opt-out list and its enforcement; the metrics exporter reads them."""

    entries: int = 0  # opt-outs in force (number and scope)
    numbers: int = 0  # numbers with at least one opt-out
    opt_outs: int = 0  # opt-outs that took effect (keyword, API, import, CLI)
    opt_ins: int = 0  # opt-outs removed
    keyword_opt_outs: int = 0
    lenient_opt_outs: int = 0  # of those, matched inside a short sentence
    refused_http: int = 0  # MTs refused because the recipient opted out, per channel
    refused_smpp: int = 0
    refused_otp: int = 0
    refused_internal: int = 0
    refused_queued: int = 0  # accepted before the opt-out, stopped as a link took them
    confirmations_passed: int = 0  # opt-out confirmations let past the opt-out they confirm
    otp_exempt_passed: int = 0  # OTPs from an otp_exempt sender let past an opt-out
    synced_changes: int = 0  # changes learned from other writers (CLI, other daemons)
    heard_changes: int = 0  # changes announced by the store as they committed (a cluster)
    write_failures: int = 0
    load_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class OptOutOutcome:
    """What a change did: the scopes it was about and, for each, whether the list changed."""

    scopes: tuple[tuple[OptOutScope, str], ...]
    changed: tuple[bool, ...]

    @property
    def any_changed(self) -> bool:
        return any(self.changed)

    @property
    def confirmation(self) -> str:
        """What `MessageRequest.confirms_optout` carries on this opt-out's confirmation."""
        scope, target = self.scopes[0]
        return scope_key(scope, target)


class OptOutRegistry:
    """The opt-out list; see the module docstring for scopes and ordering."""

    def __init__(
        self,
        store: OptOutStore,
        groups: SenderGroups | None = None,
        *,
        clock: Callable[[], float] = time.time,
        stats: OptOutStats | None = None,
        origin: str | None = None,
    ) -> None:
        self.store = store
        self.groups = groups if groups is not None else SenderGroups()
        self.clock = clock
        self.stats = stats if stats is not None else OptOutStats()
        # Written into each audit row, so a daemon skips its own changes when it syncs.
        self.origin = origin or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # number -> one key (the common case, a plain str) or a set of keys
        self._by_number: dict[str, str | set[str]] = {}
        self._sender_keys: dict[str, frozenset[str]] = {}
        # Opt-outs in memory whose write is not committed yet: (number, key) -> how many.
        self._pending: dict[tuple[str, str], int] = {}
        self._last_audit_id = 0
        self._sync_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def set_groups(self, groups: SenderGroups) -> None:
        """A reload: which senders share opt-outs from now on (kept opt-outs stay as made)."""
        self.groups = groups
        self._sender_keys = {}

    # --- the check --------------------------------------------------------------------------
    def blocks(self, recipient: str, sender: str) -> bool:
        """Does an opt-out stop `sender` sending to `recipient` (E.164 digits, no '+')?
        O(1); `sender` as the message carries it (any spelling `sender_key` accepts)."""
        held = self._by_number.get(recipient)
        if held is None:
            return False
        keys = self._sender_keys.get(sender)
        if keys is None:
            keys = self._keys_for(sender)
        if held.__class__ is str:
            return held in keys
        return not keys.isdisjoint(held)

    def _keys_for(self, sender: str) -> frozenset[str]:
        key = sender_key(sender) if sender else ""
        keys = {ALL_KEY}
        if key:
            keys.add("s:" + key)
            group = self.groups.group_of(key)
            if group is not None:
                keys.add("g:" + group.name)
        made = frozenset(keys)
        if len(self._sender_keys) >= _SENDER_CACHE_MAX:
            self._sender_keys.clear()
        self._sender_keys[sender] = made
        return made

    def blocking_keys(self, number: str, sender: str) -> set[str]:
        """The scope keys of `number`'s opt-outs that stop `sender` (empty: none)."""
        held = self._by_number.get(number)
        if held is None:
            return set()
        keys = self._keys_for(sender)
        return {key for key in ([held] if isinstance(held, str) else held) if key in keys}

    def scopes_of(self, number: str) -> list[tuple[OptOutScope, str]]:
        """A number's opt-outs as memory holds them (committed or about to be)."""
        held = self._by_number.get(number)
        if held is None:
            return []
        keys = [held] if isinstance(held, str) else sorted(held)
        return [key_scope(key) for key in keys]

    def __len__(self) -> int:
        return self.stats.entries

    # --- scopes -----------------------------------------------------------------------------
    def opt_out_scope(self, sender: str, *, all_senders: bool = False) -> tuple[OptOutScope, str]:
        """The scope a STOP sent to `sender` applies to: every sender for STOPALL, the
        sender's group when the group shares opt-outs, else the sender alone."""
        key = sender_key(sender) if sender else ""
        if all_senders or not key:
            return OptOutScope.ALL, ""
        group = self.groups.group_of(key)
        if group is not None and group.shared_optout:
            return OptOutScope.GROUP, group.name
        return OptOutScope.SENDER, key

    def scopes_blocking(self, number: str, sender: str) -> list[tuple[OptOutScope, str]]:
        """The opt-outs of `number` that stop `sender`: what a START sent to it removes."""
        held = self._by_number.get(number)
        if held is None:
            return []
        keys = self._keys_for(sender)
        return [
            key_scope(key) for key in ([held] if isinstance(held, str) else held) if key in keys
        ]

    # --- changes ----------------------------------------------------------------------------
    async def opt_out(
        self,
        number: str,
        *,
        sender: str = "",
        all_senders: bool = False,
        scope: OptOutScope | None = None,
        target: str = "",
        via: OptOutVia = OptOutVia.API,
        keyword: str | None = None,
        lenient: bool = False,
        source: str = "",
        reason: str = "",
    ) -> OptOutOutcome:
        """Stop messages to `number`: from `sender` (its group, or every sender with
        `all_senders`), or in the explicit `scope` and `target`. Durable and audited when it
        returns; blocks in memory from the moment it is called."""
        if scope is None:
            scope, target = self.opt_out_scope(sender, all_senders=all_senders)
        else:
            target = _scope_target(scope, target)
        change = OptOutChange(
            OptOutAction.OPT_OUT,
            number,
            scope,
            target,
            self.clock(),
            via,
            keyword=keyword,
            lenient=lenient,
            source=source,
            reason=reason,
            always_audit=via is OptOutVia.KEYWORD,
        )
        changed = await self.apply([change])
        return OptOutOutcome(((scope, target),), tuple(changed))

    async def opt_in(
        self,
        number: str,
        *,
        sender: str | None = None,
        scope: OptOutScope | None = None,
        target: str = "",
        via: OptOutVia = OptOutVia.API,
        keyword: str | None = None,
        source: str = "",
        reason: str = "",
    ) -> OptOutOutcome:
        """Undo opt-outs of `number`: with `sender`, every one that stops that sender (a START
        sent to it); with `scope`, that one; with neither, all of them. Messages to the number
        are let through only once the removal is committed."""
        if scope is not None:
            scopes = [(scope, _scope_target(scope, target))]
        elif sender is not None:
            scopes = self.scopes_blocking(number, sender)
            if not scopes and via is OptOutVia.KEYWORD:
                scopes = [self.opt_out_scope(sender)]  # audited: the subscriber said START
        else:
            scopes = self.scopes_of(number)
        at = self.clock()
        changes = [
            OptOutChange(
                OptOutAction.OPT_IN,
                number,
                each_scope,
                each_target,
                at,
                via,
                keyword=keyword,
                source=source,
                reason=reason,
                always_audit=via is OptOutVia.KEYWORD,
            )
            for each_scope, each_target in scopes
        ]
        changed = await self.apply(changes)
        return OptOutOutcome(tuple(scopes), tuple(changed))

    async def apply(self, changes: Sequence[OptOutChange]) -> list[bool]:
        """Apply changes in order (an import's rows, one keyword's change): opt-outs block in
        memory now, opt-ins stop blocking once committed. Returns, per change, whether it
        changed the list. Raises the store's error when the write failed (then nothing of it
        holds, and memory is put back to what the store says)."""
        if not changes:
            return []
        added: list[tuple[str, str, bool]] = []
        for change in changes:
            if change.action is OptOutAction.OPT_OUT:
                key = scope_key(change.scope, change.target)
                fresh = self._add(change.number, key)
                self._pending[(change.number, key)] = self._pending.get((change.number, key), 0) + 1
                added.append((change.number, key, fresh))
        try:
            changed = await self.store.change_optouts(changes, origin=self.origin)
        except BaseException:
            self.stats.write_failures += 1
            self._settle_pending(added)
            # Put back what the store holds; until then memory errs towards blocking.
            self._refresh_later({change.number for change in changes})
            raise
        self._settle_pending(added)
        for change, did in zip(changes, changed):
            key = scope_key(change.scope, change.target)
            if change.action is OptOutAction.OPT_OUT:
                if did:
                    self.stats.opt_outs += 1
                    if change.via is OptOutVia.KEYWORD:
                        self.stats.keyword_opt_outs += 1
                        if change.lenient:
                            self.stats.lenient_opt_outs += 1
                self._add(change.number, key)  # a later opt-in of the batch may take it out
            else:
                if did:
                    self.stats.opt_ins += 1
                if not self._pending.get((change.number, key)):
                    self._remove(change.number, key)
        return changed

    def _settle_pending(self, added: Iterable[tuple[str, str, bool]]) -> None:
        for number, key, _fresh in added:
            left = self._pending[(number, key)] - 1
            if left:
                self._pending[(number, key)] = left
            else:
                del self._pending[(number, key)]

    # --- memory -----------------------------------------------------------------------------
    def _add(self, number: str, key: str) -> bool:
        held = self._by_number.get(number)
        if held is None:
            self._by_number[number] = key
            self.stats.numbers += 1
        elif isinstance(held, str):
            if held == key:
                return False
            self._by_number[number] = {held, key}
        else:
            if key in held:
                return False
            held.add(key)
        self.stats.entries += 1
        return True

    def _remove(self, number: str, key: str) -> bool:
        held = self._by_number.get(number)
        if held is None:
            return False
        if isinstance(held, str):
            if held != key:
                return False
            del self._by_number[number]
            self.stats.numbers -= 1
        else:
            if key not in held:
                return False
            held.discard(key)
            if len(held) == 1:
                self._by_number[number] = next(iter(held))
        self.stats.entries -= 1
        return True

    def _set(self, number: str, keys: set[str]) -> None:
        for key in set(self.scope_keys_of(number)) - keys:
            self._remove(number, key)
        for key in keys:
            self._add(number, key)

    def scope_keys_of(self, number: str) -> list[str]:
        held = self._by_number.get(number)
        if held is None:
            return []
        return [held] if isinstance(held, str) else list(held)

    # --- load and sync ----------------------------------------------------------------------
    async def load(self) -> None:
        """Fill memory from the store (start-up). Changes made from here on by other writers
        are picked up by `sync`."""
        started = time.perf_counter()
        last = await self.store.last_optout_audit_id()
        # One key object per scope and target (a handful), shared by every number: a million
        # opt-outs cost a dict entry and a number string each.
        keys_of: dict[str, dict[str, str]] = {"sender": {}, "group": {}, "all": {}}
        by_number: dict[str, str | set[str]] = {}
        setdefault = by_number.setdefault
        more: list[tuple[str, str]] = []  # numbers with more than one opt-out
        entries = 0
        after: tuple[str, str, str] | None = None
        while True:
            rows = await self.store.optout_scopes(after=after, limit=LOAD_PAGE)
            for number, scope, target in rows:
                keys = keys_of[scope]
                key = keys.get(target)
                if key is None:
                    key = keys[target] = scope_key(OptOutScope(scope), target)
                if setdefault(number, key) is not key:
                    more.append((number, key))
            entries += len(rows)
            if len(rows) < LOAD_PAGE:
                break
            after = rows[-1]
        for number, key in more:
            held = by_number[number]
            if isinstance(held, str):
                by_number[number] = {held, key}
            else:
                held.add(key)
        self._by_number = by_number
        self.stats.entries = entries
        self.stats.numbers = len(by_number)
        self._last_audit_id = last
        self.stats.load_seconds = time.perf_counter() - started

    async def refresh(self, number: str) -> None:
        """Make memory hold what the store holds for `number`, plus opt-outs being written."""
        stored = {
            scope_key(OptOutScope(scope), target)
            for scope, target in await self.store.optouts_of(number)
        }
        pending = {key for (held_number, key) in self._pending if held_number == number}
        self._set(number, stored | pending)

    def _refresh_later(self, numbers: set[str]) -> None:
        async def refresh_all() -> None:
            for number in numbers:
                try:
                    await self.refresh(number)
                except Exception:
                    log.exception("opt-outs: cannot re-read %s from the store", number)

        with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
            task = asyncio.get_running_loop().create_task(refresh_all())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def sync(self) -> int:
        """Apply the changes other writers committed since the last sync; returns how many."""
        seen = 0
        while True:
            records = await self.store.optout_audit_since(self._last_audit_id)
            if not records:
                return seen
            numbers = {r.number for r in records if r.origin != self.origin and r.changed}
            self._last_audit_id = records[-1].id
            for number in numbers:
                await self.refresh(number)
            seen += len(numbers)
            self.stats.synced_changes += len(numbers)

    def hear(self, notice: OptOutNotice) -> None:
        """A change committed by any writer (this daemon's own too), announced by the store in
        commit order: memory follows at once. An opt-in leaves an opt-out of this daemon's
        that is being written in place (its own write puts it back anyway)."""
        key = scope_key(notice.scope, notice.target)
        if notice.action is OptOutAction.OPT_OUT:
            self._add(notice.number, key)
        elif not self._pending.get((notice.number, key)):
            self._remove(notice.number, key)
        if notice.origin != self.origin:
            self.stats.heard_changes += 1

    def _sync_soon(self) -> None:
        """Read what the announcements may have missed (listening started or restarted)."""

        async def sync_once() -> None:
            try:
                await self.sync()
            except Exception:
                log.exception("opt-outs: cannot read changes from the store")

        task = asyncio.get_running_loop().create_task(sync_once())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def start_sync(self, interval: float) -> None:
        """Sync every `interval` seconds until `stop`; on a store that announces changes, apply
        each as it commits too (the sync is then the safety net for announcements missed while
        the store's listening connection was down)."""
        if isinstance(self.store, OptOutFeed):
            self.store.watch_optouts(self.hear, self._sync_soon)

        async def sync_forever() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.sync()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("opt-outs: cannot read changes from the store")

        self._sync_task = asyncio.get_running_loop().create_task(sync_forever(), name="optout-sync")

    async def stop(self) -> None:
        tasks = [t for t in (self._sync_task, *self._background) if t is not None]
        await cancel_and_wait(*tasks)
        self._sync_task = None


def _scope_target(scope: OptOutScope, target: str) -> str:
    if scope is OptOutScope.ALL:
        return ""
    if not target:
        raise ValueError(f"an opt-out of scope {scope.value!r} needs a sender or group")
    return sender_key(target) if scope is OptOutScope.SENDER else target
