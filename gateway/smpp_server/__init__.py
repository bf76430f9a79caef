"""The SMPP server our customers (ESMEs) bind to: to them Tandem is an SMSC.

Owns: the listeners (plain and TLS), bind checks (accounts, passwords, source networks, bind
types, concurrent binds, the failed-bind guard), turning submit_sm / data_sm / submit_multi into
`MessageRequest`s for `gateway.intake` (the one place checks happen) and answering with our
message id once the message is durable, query_sm and cancel_sm limited to the account's own
messages, multipart submits and MOs (reassembled or passed through as parts, per account), and
delivering receipts and MOs as deliver_sm to each account's receiving binds (round robin, queued
while none is bound, bounded, with expiry and retries; the queue is kept in the store, so a
restart or kill -9 loses none of it).

Isolation of binds: every bind has its own bounded decoder (the session's `max_pdu_length`), a
count of requests it has outstanding (reading pauses at its window, so a flood waits in its own
socket buffer), a write buffer limit (a client that does not read is paused, then dropped), a
bind timeout for connections that never bind and enquire_link probes for half-open TCP.

Must never: decide routing or policy (intake does), touch SQL (the store does) or parse SMPP
bytes itself (smpp.codec / smpp.session do).

The package, by concern: `server` (listeners, life cycle, account runtimes, which part answers
which request, housekeeping, reloads), `binds` (one connection: its window, back-pressure and
draining; the per-account runtime), `bind_decisions` (credentials, the guard, bind limits),
`submit_intake` (submits into intake in batches, tps, held multipart submits), `submits`
(validating a submit into a request), `queries` (query_sm and cancel_sm on the account's own
messages), `outbox` (receipts and MOs to customers, backed by the store), `receipts` (the
deliver_sm receipt), `settings` (settings, counters, shared records).
"""

from gateway.smpp_server.server import CustomerSmppServer, start_customer_server
from gateway.smpp_server.settings import SYSTEM_ID, CustomerServerStats, ServerSettings
from gateway.smpp_server.submits import estimate_segments

__all__ = [
    "SYSTEM_ID",
    "CustomerServerStats",
    "CustomerSmppServer",
    "ServerSettings",
    "estimate_segments",
    "start_customer_server",
]
