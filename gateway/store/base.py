"""The one store interface: what the gateway may ask of durable message storage.

Owns: `MessageStore` (the protocol every backend implements), the result types it returns and the
store errors. Callers (intake links, senders, the receipt handler, the daemon on start) depend on
this module only; `gateway.store.sqlite` is the default backend, a PostgreSQL one can follow.

Never does: SQL, files, connections, or anything one backend needs and another would not. Backend
knobs (paths, synchronous modes, pool sizes) belong to the backend's constructor.

Contract shared by all backends:
- Every write is durable when its `await` returns: an MT is acknowledged to a customer only after
  `accept` returned. Backends may group many callers' writes into one transaction (group commit);
  each caller still waits for the commit that carries its own rows.
- Transitions follow `dlr.status` (`advance`, `can_transition`) and segment receipts follow
  `dlr.aggregate.apply_segment_status`; the store applies those rules, it does not have its own.
  Final statuses are final (apart from dlr.status's one exception: a definitive receipt replaces
  UNKNOWN). A later event for a final message or segment (a late receipt, a requeue after a
  cancel) is recorded in history and changes nothing; the result says `changed=False`.
- Secrets at rest: an OTP message's content (kind `otp`: its body and text carry the code)
  and every API key's `callback_secret` are sealed before they reach the files, with a key
  kept apart from them (`gateway.store.sealing`), and given back whole by the reads. Results
  of writes (`StatusChange.message`) carry an OTP message without its content, as after
  `redact_message`.
- Carrier ids are stored and looked up exactly as given: callers pass the canonical form from
  `dlr.ids.canonical_message_id`, the store never normalises.
- `attempts` counts send attempts that reached an outcome: `requeue` and `fail` (unless told
  otherwise) add one each, `mark_submitted` one when the message leaves QUEUED. A message being
  sent when the process dies is still QUEUED in the store and comes back from `load_pending`
  (at-least-once).

Growing the interface: later tables (accounts and API keys, idempotency keys, OTP records, the
opt-out list, MO messages) get their own small protocols next to this one, implemented by the same
backend objects over the same writer; nothing here needs rewriting for them.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dlr.aggregate import SegmentUpdate
from dlr.correlation import SegmentRef
from dlr.status import MessageStatus, SegmentStatus, StatusEvent, StatusSource
from gateway.messages import Channel, HistoryEntry, Message, Segment, Tenant


class StoreError(Exception):
    """A store operation could not be carried out."""


class DuplicateMessageId(StoreError):
    """`accept` was given a message whose id is already stored; nothing of that call was kept."""


class StoreClosed(StoreError):
    """The store is not open (never opened, or closed)."""


@dataclass(slots=True)
class MessageRecord:
    """A message with its segments (by index) and its history (oldest first)."""

    message: Message
    segments: list[Segment] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)


@dataclass(slots=True)  # a value: never mutate one (frozen init costs ~2x, several a message)
class StatusChange:
    """The outcome of a transition request.

    `changed`: the request took effect (False: unknown id, a final status, a duplicate).
    `message`: the message as stored after the request (None: no such message or carrier id).
    For segment-level requests, `segment` is the segment as stored after it and `update` is the
    `dlr.aggregate.SegmentUpdate` that decided it (feed it to `dlr.aggregate.reports`).
    """

    changed: bool
    message: Message | None
    segment: Segment | None = None
    update: SegmentUpdate | None = None


@dataclass(slots=True, frozen=True)
class SubmitResult:
    """One message's submit results for `MessageStore.mark_submitted_many`: the arguments of
    `mark_submitted`, as a value."""

    message_id: str
    segments: Sequence[Segment]
    link: str
    at: float
    source: StatusSource


@dataclass(slots=True, frozen=True)
class SegmentReceipt:
    """One receipt for `MessageStore.apply_segment_statuses`: the arguments of
    `apply_segment_status`, as a value."""

    link: str
    carrier_id: str
    status: SegmentStatus
    at: float
    source: StatusSource
    detail: str = ""
    error: str | None = None
    network_error: str | None = None


# A message waiting to be sent, as the send queue keeps a backlog (by reference): its id, its
# priority, its route, and the link it waits for (the one it was last given to while that is
# still one of its targets, else its first target; None when it has no target). A plain
# tuple: a million of them pass through at start-up.
PendingRef = tuple[str, int, str | None, str | None]


@dataclass(slots=True, frozen=True)
class StoreStats:
    """Counters of the write path, for tests and metrics (group commit is visible here)."""

    commits: int  # transactions committed
    operations: int  # write requests carried by those transactions
    rows: int  # messages / segments / history items those requests wrote
    failed_operations: int  # requests that raised (their part of the transaction rolled back)
    largest_batch: int  # most requests one transaction carried
    queued: int  # requests waiting for the writer right now


@runtime_checkable
class MessageStore(Protocol):
    """Durable MT storage: accept, follow through sending and receipts, resume after restart."""

    async def open(self) -> None:
        """Create or migrate the schema and start the writer; call once before anything else."""

    async def close(self) -> None:
        """Finish every write already requested, then release connections."""

    def stats(self) -> StoreStats: ...

    # --- intake -------------------------------------------------------------------------------
    async def accept(
        self, messages: Sequence[Message], *, source: StatusSource = StatusSource.INTAKE
    ) -> None:
        """Store new messages (as given, usually ACCEPTED or QUEUED); returns once durable.

        All or nothing per call: a duplicate id raises `DuplicateMessageId` and keeps none.
        """

    async def cancel(self, message_id: str, *, at: float, source: StatusSource) -> StatusChange:
        """DELETED if still ACCEPTED/QUEUED. Take it out of the send queue first: a message a
        sender already holds cannot be recalled, and the queue is what knows that."""

    # --- sending ------------------------------------------------------------------------------
    async def mark_submitted(
        self,
        message_id: str,
        segments: Sequence[Segment],
        *,
        link: str,
        at: float,
        source: StatusSource,
    ) -> StatusChange:
        """The link got submit_sm_resp for these segments (all of them, or one at a time):
        record link and carrier id (the correlation entry), apply each segment's status (usually
        SUBMITTED, FAILED for a refused part) and derive the message's. The attempt is counted
        when the message leaves QUEUED. `segment`/`update` of the result are the last segment's.
        """

    async def mark_submitted_many(self, results: Sequence[SubmitResult]) -> list[StatusChange]:
        """`mark_submitted` for each result, in order, as one write request: the submit results
        that one read from a link brought cost one await and one queue entry. All or nothing,
        like one call."""

    async def record_link_outcomes(
        self, outcomes: Sequence[SubmitResult | SegmentReceipt]
    ) -> list[StatusChange]:
        """Submit results and receipts as one write request, applied in the order given (the
        order a link read them): a receipt finds the carrier id of a submit result before it.
        One result per item, in order; all or nothing, like one call."""

    async def requeue(
        self,
        message_id: str,
        *,
        next_attempt_at: float,
        error: str,
        at: float,
        source: StatusSource,
    ) -> StatusChange:
        """A temporary failure: QUEUED again, not before `next_attempt_at`; attempt counted."""

    async def fail(
        self,
        message_id: str,
        status: MessageStatus,
        *,
        error: str | None,
        at: float,
        source: StatusSource,
        count_attempt: bool = True,
    ) -> StatusChange:
        """A permanent outcome before or instead of submission (REJECTED, FAILED, EXPIRED, ...).

        `error` carries the SMPP status or reason, e.g. "0x0000000B ESME_RINVDSTADR".
        `count_attempt=False` for outcomes that were no send attempt (expired in the queue, no
        route).
        """

    async def expire_due(self, now: float, *, source: StatusSource, limit: int = 1000) -> list[str]:
        """Mark EXPIRED every ACCEPTED/QUEUED message whose validity ended by `now`; their ids."""

    # --- receipts -----------------------------------------------------------------------------
    async def apply_segment_status(
        self,
        link: str,
        carrier_id: str,
        status: SegmentStatus,
        *,
        at: float,
        source: StatusSource,
        detail: str = "",
        error: str | None = None,
        network_error: str | None = None,
    ) -> StatusChange:
        """A receipt (or other news) for the segment the carrier knows as `carrier_id` on `link`.

        Updates the segment, records history and re-derives the message status, in one
        transaction. Unknown carrier id: `StatusChange(False, None)`, nothing recorded.
        """

    async def apply_segment_statuses(
        self, receipts: Sequence[SegmentReceipt]
    ) -> list[StatusChange]:
        """`apply_segment_status` for each receipt, in order, as one write request: a burst of
        receipts (what one read from a link brought) costs one await and one queue entry.
        The results are in the receipts' order; it is all or nothing, like one call."""

    async def set_segment_status(
        self,
        message_id: str,
        segment_index: int,
        status: SegmentStatus,
        *,
        at: float,
        source: StatusSource,
        detail: str = "",
        error: str | None = None,
        network_error: str | None = None,
    ) -> StatusChange:
        """Same as `apply_segment_status`, addressed by our ids (e.g. the receipt timeout)."""

    async def find_segment(self, link: str, carrier_id: str) -> SegmentRef | None:
        """The segment a carrier id on a link belongs to (the latest submission if a carrier
        reused the id); `find_segment(*dlr.ids.smpp_receipt_key(...))` works."""

    async def list_submitted_older_than(self, cutoff: float, *, limit: int = 1000) -> list[Segment]:
        """Segments still awaiting a final receipt that were submitted before `cutoff`."""

    async def count_submitted_since(self, link: str, since: float) -> int:
        """Parts link `link` had accepted at or after `since` (a modem link's count of its
        day, restored at start-up so a restart does not reset a SIM's daily cap)."""

    # --- reading and history ------------------------------------------------------------------
    async def get(self, message_id: str) -> MessageRecord | None:
        """The message with its segments and history, or None."""

    async def load_pending(self) -> list[Message]:
        """Every ACCEPTED/QUEUED message (including those in flight when the process stopped),
        most urgent first: what the daemon puts back into the send queue on start."""

    def pending_refs(self, due_by: float, *, page: int = 10_000) -> AsyncIterator[list[PendingRef]]:
        """The ACCEPTED/QUEUED messages due by `due_by`, as references, `page` at a time in id
        (arrival) order: how the daemon refills its send queue on start without holding a
        large backlog whole."""

    async def load_scheduled(self, after: float) -> list[Message]:
        """The ACCEPTED/QUEUED messages not due before `after` (scheduled, backing off), whole."""

    async def load_waiting(self, message_ids: Sequence[str]) -> list[Message]:
        """Those of `message_ids` still ACCEPTED/QUEUED, whole: the send queue reads a backlog
        it keeps by reference back a page at a time. Unknown or finished ids are left out."""

    async def record_history(
        self,
        message_id: str,
        *,
        status: MessageStatus | SegmentStatus,
        source: StatusSource,
        at: float,
        detail: str = "",
        segment_index: int | None = None,
    ) -> None:
        """Add an event (changed=False) to a message's history without changing any status."""

    async def record_history_many(self, entries: Sequence[tuple[str, StatusEvent]]) -> None:
        """`record_history` for several messages in one write: (message id, event) each, the
        events' `changed` False."""


# --- HTTP API state: API keys, idempotency records, OTP verifications ---------------------------
# Small protocols beside `MessageStore`, implemented by the same backend objects over the same
# writer (see "Growing the interface" above). Their logic lives in gateway.keys, gateway.http
# and gateway.otp; the store only keeps rows.


@dataclass(slots=True)
class ApiKeyRecord:
    """An HTTP API key as stored: never the key itself, only its SHA-256 (`key_hash`).

    `name` is unique and is also the account the key's messages are stored under.
    `callback_secret` signs receipt callbacks: whole in this record, sealed at rest (see the
    contract above).
    """

    id: str
    name: str
    key_hash: str
    prefix: str  # the first characters of the key, shown by `tandem keys list`
    scopes: tuple[str, ...]
    created_at: float
    callback_secret: str
    senders: str | None = None  # a regular expression every `from` must fully match
    countries: tuple[str, ...] | None = None  # allowed destination regions; None: all
    requests_per_second: float | None = None  # None: the [http] default
    messages_per_second: float | None = None
    callback_url: str | None = None  # receipts for messages sent without their own URL
    revoked_at: float | None = None


@runtime_checkable
class ApiKeyStore(Protocol):
    async def save_api_key(self, key: ApiKeyRecord) -> None:
        """Store a new key; raises `DuplicateKeyName` when the name is taken."""

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The key (revoked ones too) whose hash is `key_hash`."""

    async def find_api_key_by_name(self, name: str) -> ApiKeyRecord | None: ...

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""

    async def revoke_api_key(self, name_or_id: str, *, at: float) -> bool:
        """Revoke by name or id; False when no active key matched."""


class DuplicateKeyName(StoreError):
    """`save_api_key` was given a name another key already has."""


@dataclass(slots=True)
class IdempotencyRecord:
    """The first answer to a request that carried an `Idempotency-Key`."""

    key_id: str  # the API key's id: idempotency keys are scoped to one API key
    idempotency_key: str
    fingerprint: str  # hash of method, path and body: a reuse with another body is refused
    status: int
    body: bytes
    created_at: float


@runtime_checkable
class IdempotencyStore(Protocol):
    async def find_idempotency(
        self, key_id: str, idempotency_key: str, *, newer_than: float
    ) -> IdempotencyRecord | None: ...

    async def save_idempotency(self, record: IdempotencyRecord) -> None:
        """Keep the answer (a later save for the same keys replaces it)."""

    async def purge_idempotency(self, older_than: float) -> int:
        """Forget answers created before `older_than`; how many were forgotten."""


class OtpStatus(enum.StrEnum):
    """A verification's status (the one OTP status enum; `gateway.otp` owns the rules)."""

    PENDING = "pending"
    APPROVED = "approved"
    EXPIRED = "expired"
    CANCELED = "canceled"
    MAX_ATTEMPTS_REACHED = "max_attempts_reached"


@dataclass(slots=True)
class OtpRecord:
    """One verification: the code's hash (never the code), its counters and its state."""

    id: str
    key_id: str
    to: str  # E.164 with '+'
    status: str  # an `OtpStatus` value
    code_hash: str
    code_length: int
    created_at: float
    expires_at: float
    max_checks: int
    checks: int = 0
    sends: int = 1
    message_id: str | None = None  # the latest SMS that carried the code
    updated_at: float = 0.0


@dataclass(slots=True, frozen=True)
class OtpChange:
    """What a check, cancel or re-send did: the verification as stored right after it, and
    whether this request changed it (a check that used an attempt, a cancel that canceled)."""

    record: OtpRecord
    changed: bool


@runtime_checkable
class OtpStore(Protocol):
    """Contract: every change of a verification is ONE conditional write decided by the store
    from the row as it is at that instant (never a row read, changed and written back), so
    concurrent checks on any number of daemons sharing the store cannot beat its limits. Only a
    PENDING verification that has not expired (`expires_at > now`) changes; every other status
    is final. A check of one that expired marks it EXPIRED. `key_id` must match: a verification
    of another key is not found (None)."""

    async def create_otp(self, record: OtpRecord) -> None:
        """Store a new verification (its id is new)."""

    async def get_otp(self, otp_id: str) -> OtpRecord | None: ...

    async def check_otp(
        self, otp_id: str, *, key_id: str, code_hash: str, now: float
    ) -> OtpChange | None:
        """One check with the hash of the code given. Counted only while pending with checks
        left: `checks + 1`, then APPROVED if `code_hash` is the stored hash, else
        MAX_ATTEMPTS_REACHED if that was the last check allowed. Not counted otherwise."""

    async def cancel_otp(self, otp_id: str, *, key_id: str, now: float) -> OtpChange | None:
        """CANCELED if pending."""

    async def record_otp_send(
        self,
        otp_id: str,
        *,
        key_id: str,
        message_id: str,
        code_hash: str,
        code_length: int,
        now: float,
    ) -> OtpChange | None:
        """A re-send of a pending verification: one more send, its message, and the hash of the
        code it carried (the same code, or the caller's new one). Changes no status."""


@runtime_checkable
class MessageRedaction(Protocol):
    async def redact_message(self, message_id: str) -> None:
        """Forget a message's text and body (an OTP's code must not stay at rest once it was
        sent); status, segments and history are kept."""


# --- deliveries owed to SMPP customers: receipts and MOs ---------------------------------------
# The customer SMPP server's outbox is memory in front of these rows: a receipt or MO that a
# customer has not yet answered survives a restart (or kill -9) and is offered again.


@dataclass(slots=True, frozen=True)
class OwedReceipt:
    """A receipt an SMPP customer asked for and has not yet taken: the message as stored, the
    status the receipt reports and the number of segments it was sent as."""

    message: Message
    status: MessageStatus
    segments: int


@dataclass(slots=True, frozen=True)
class QueuedMo:
    """An MO kept for an account until one of its binds takes it.

    `pdu`: the deliver_sm to hand over, encoded (`smpp.codec.encode`). `part_of`: set while the
    MO is a part held for reassembly (the parts of one message share it); None once deliverable.
    Times are wall-clock seconds."""

    id: int
    account: str
    pdu: bytes
    received_at: float
    expires_at: float
    part_of: str | None = None


@runtime_checkable
class CustomerDeliveryStore(Protocol):
    """Contract: a status change that owes its customer a receipt marks it owed in the same
    transaction as the change, so no crash can lose it; a later such change replaces the mark
    (the customer is owed the latest). Owed: for SMPP messages, what `registered_delivery` asks
    for (`dlr.customer_receipt.wants_receipt`); for HTTP messages with a `callback_url`, the
    callback of a final status."""

    async def owed_receipts(
        self,
        *,
        channel: Channel | None = None,
        since: float = 0.0,
        after: tuple[float, str] | None = None,
        account: str | None = None,
        limit: int | None = None,
    ) -> list[OwedReceipt]:
        """Receipts still owed for changes at or after `since`, oldest change first (then by
        message id): of one channel's and one account's messages, past the (change time,
        message id) `after`, at most `limit`. What the SMPP server and the HTTP callbacks queue
        on start, and the SMPP server whenever its outbox has room again."""

    async def forget_owed_receipts(
        self, *, before: float, channel: Channel | None = None, account: str | None = None
    ) -> int:
        """Settle, without sending, every receipt (of one channel's, one account's messages)
        owed for a change before `before`: expired. Returns how many."""

    async def receipts_settled(self, settled: Sequence[tuple[str, MessageStatus]]) -> None:
        """(message id, status): those receipts were taken, refused for good, or expired. A mark
        that has moved on to a later status since stays owed."""

    async def queue_mo(
        self,
        account: str,
        pdu: bytes,
        *,
        received_at: float,
        expires_at: float,
        part_of: str | None = None,
    ) -> int:
        """Keep an MO (or a part of one) for `account`; returns its id once durable."""

    async def join_mo(
        self, account: str, pdu: bytes, *, part_of: str, received_at: float, expires_at: float
    ) -> int:
        """The parts kept under `part_of` became one MO: store `pdu` and drop the parts, in one
        transaction. Returns the new MO's id."""

    async def mos_settled(self, ids: Sequence[int]) -> None:
        """Those MOs were taken, refused for good, or expired: forget them."""

    async def queued_mos(
        self, *, account: str | None = None, limit: int | None = None
    ) -> list[QueuedMo]:
        """Every MO still kept (of one account's), in arrival order (held parts included), at
        most `limit`."""

    async def find_references(self, tenant: Tenant, reference: str) -> list[str]:
        """Ids of the tenant's messages whose `reference` is `reference` (a submit_multi's
        other destinations carry the id it was answered with); never another channel's."""


# --- the opt-out list (gateway.optouts.registry keeps it in memory; the store is the truth) ---


class OptOutScope(enum.StrEnum):
    """Which senders an opt-out stops: one sender (our number, short code or alphanumeric id),
    a sender group (`[[sender_groups]]`), or all of them (STOPALL)."""

    SENDER = "sender"
    GROUP = "group"
    ALL = "all"


class OptOutAction(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


class OptOutVia(enum.StrEnum):
    """Where a change came from: an MO keyword, the HTTP API, a CSV import, the CLI."""

    KEYWORD = "keyword"
    API = "api"
    IMPORT = "import"
    CLI = "cli"


@dataclass(frozen=True, slots=True)
class OptOutChange:
    """One opt-out to add or remove, and what the audit trail says about it.

    `target`: the sender (as `gateway.optouts.senders.sender_key` spells it) or group name;
    "" for the ALL scope. `source`: the link an MO came in on, or the API key / file that
    made the change. `always_audit`: audited even when it changes nothing (a subscriber's
    repeated STOP is still their word)."""

    action: OptOutAction
    number: str  # E.164 digits, no '+'
    scope: OptOutScope
    target: str
    at: float
    via: OptOutVia
    keyword: str | None = None
    lenient: bool = False
    source: str = ""
    reason: str = ""
    always_audit: bool = False


@dataclass(frozen=True, slots=True)
class OptOutEntry:
    """One opt-out in force."""

    number: str
    scope: OptOutScope
    target: str
    created_at: float
    via: OptOutVia
    keyword: str | None
    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class OptOutAuditRecord:
    """One change of a number's opt-outs, as the audit trail keeps it (oldest id first)."""

    id: int
    number: str
    action: OptOutAction
    scope: OptOutScope
    target: str
    via: OptOutVia
    keyword: str | None
    lenient: bool
    source: str
    reason: str
    at: float
    changed: bool  # False: the list already said so (a repeated STOP)
    origin: str  # which daemon (or tool) wrote it: a daemon applies others' changes


class OptOutStore(Protocol):
    async def change_optouts(self, changes: Sequence[OptOutChange], *, origin: str) -> list[bool]:
        """Apply the changes in order, in one transaction, each with its audit row; returns
        for each whether it changed the list. Durable when it returns."""
        ...

    async def optout_scopes(
        self, *, after: tuple[str, str, str] | None = None, limit: int = 100_000
    ) -> list[tuple[str, str, str]]:
        """Opt-outs in force as (number, scope, target), in that order, those after `after`:
        the registry's start-up load, a page at a time."""
        ...

    async def optouts_of(self, number: str) -> list[tuple[str, str]]:
        """One number's opt-outs in force as (scope, target)."""
        ...

    async def list_optouts(
        self,
        *,
        number: str | None = None,
        scope: OptOutScope | None = None,
        target: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
    ) -> list[OptOutEntry]:
        """Opt-outs in force ordered by (number, scope, target), those after `after`."""
        ...

    async def optout_history(
        self, number: str, *, after_id: int = 0, limit: int = 100
    ) -> list[OptOutAuditRecord]:
        """A number's audit trail, oldest first."""
        ...

    async def optout_audit_since(
        self, after_id: int, *, limit: int = 10_000
    ) -> list[OptOutAuditRecord]:
        """Audit rows with an id above `after_id`, oldest first (how a daemon learns of the
        changes other writers made: the CLI, another daemon on the same store)."""
        ...

    async def last_optout_audit_id(self) -> int: ...


@dataclass(frozen=True, slots=True)
class OptOutNotice:
    """One opt-out change as the store announces it at its commit (`OptOutFeed`)."""

    number: str
    action: OptOutAction
    scope: OptOutScope
    target: str
    origin: str


@runtime_checkable
class OptOutFeed(Protocol):
    """A store shared by several daemons that announces opt-out changes as they commit
    (`gateway.store.postgres`), so each daemon's list in memory follows at once."""

    def watch_optouts(
        self, on_change: Callable[[OptOutNotice], None], on_gap: Callable[[], None]
    ) -> None:
        """From now until the store closes, call `on_change` with every change committed (by
        any daemon or tool), in commit order; `on_gap` each time listening (re)starts: changes
        committed while it was not listening are not announced, the caller reads them."""
        ...


class InboundState(enum.StrEnum):
    """Where a stored MO stands."""

    HELD = "held"  # a part waiting for the rest of its message
    ROUTED = "routed"  # handed to the destinations of an inbound route (or an account)
    UNMATCHED = "unmatched"  # no route or account claims its number: kept and counted
    BLOCKED = "blocked"  # from a number on the inbound block list: kept, not forwarded


@dataclass(frozen=True, slots=True)
class InboundRow:
    """An MO as the handler asks the store to keep it (`InboundStore.record_inbound`)."""

    state: InboundState
    link: str
    source: str
    destination: str
    data_coding: int
    text: str | None
    payload: bytes
    parts_json: str  # the parts it was made of (`gateway.store.inbound.parts_to_json`)
    part_count: int
    complete: bool
    received_at: float
    carrier_timestamp: float | None = None
    part_of: str | None = None  # while HELD: the message it waits to join
    keyword: str | None = None
    keyword_class: str | None = None
    lenient: bool = False
    route: str | None = None  # the inbound route (or "account:<system_id>") it went to
    webhook: str | None = None  # the route whose webhook is owed this MO
    webhook_next: float | None = None  # when the webhook is next tried; None: nothing owed


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """A stored MO, as reads return it."""

    id: int
    row: InboundRow
    webhook_attempts: int = 0
    webhook_error: str | None = None


class InboundStore(Protocol):
    """MOs kept before the carrier is answered, the webhook deliveries owed for them, and the
    inbound block list."""

    async def record_inbound(
        self, row: InboundRow, *, replaces: str | None = None, owes_reply: bool = False
    ) -> int:
        """Keep one MO (or a held part); with `replaces`, the held parts of that message go in
        the same transaction, and with `owes_reply` the keyword reply owed for it (settled by
        `reply_settled`). Returns its id. Durable when it returns."""
        ...

    async def replies_owed(self) -> list[InboundRecord]:
        """The MOs whose keyword reply is owed (not yet stored as an MT), oldest first."""
        ...

    async def reply_settled(self, inbound_id: int) -> None:
        """The MO's keyword reply is stored as an MT, or will never be sent."""
        ...

    async def release_held(self, ids: Sequence[int], row: InboundRow) -> None:
        """Held parts whose message never completed become MOs of their own, in `row`'s state,
        route and webhook (the rest of `row` is not used)."""
        ...

    async def held_inbound(self) -> list[InboundRecord]:
        """The parts still waiting for their message (start-up puts them back)."""
        ...

    async def get_inbound(self, inbound_id: int) -> InboundRecord | None: ...

    async def list_inbound(
        self,
        *,
        number: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[InboundRecord]:
        """Newest first; `number` matches the sender or the number it was sent to."""
        ...

    async def webhooks_owed(
        self, *, after_id: int = 0, limit: int = 1000
    ) -> list[InboundRecord]: ...

    async def webhook_attempted(
        self, inbound_id: int, *, next_at: float | None, error: str | None
    ) -> None:
        """Record one attempt: `next_at` None settles it (delivered or given up)."""
        ...

    async def block_inbound(self, number: str, *, at: float, reason: str) -> bool: ...

    async def unblock_inbound(self, number: str) -> bool: ...

    async def inbound_blocked(self) -> list[tuple[str, float, str]]:
        """(number, since, reason) of every blocked number."""
        ...
