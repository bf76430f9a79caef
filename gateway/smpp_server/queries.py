"""query_sm and cancel_sm from bound customers, limited to the account's own messages: another
tenant's message id answers exactly like an unknown one. A cancel recalls only what still waits
in the queue (with a submit_multi's other destinations).

Must never: touch a message a link may be sending, or tell one tenant of another's message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlr.status import MessageStatus, StatusSource, is_final, message_state
from gateway.messages import Channel, Message, Tenant
from gateway.smpp_server.binds import AccountRuntime
from gateway.store.base import CustomerDeliveryStore
from smpp.constants import CommandStatus
from smpp.pdu import CancelSm, Pdu, QuerySm
from smpp.timefmt import format_smpp_time

if TYPE_CHECKING:
    from gateway.services import GatewayServices


class OwnMessages:
    """Answers query_sm and cancel_sm about an account's own messages."""

    def __init__(self, gateway: GatewayServices, deliveries: CustomerDeliveryStore | None) -> None:
        self.gateway = gateway
        self._deliveries = deliveries

    async def query(self, runtime: AccountRuntime, pdu: QuerySm) -> Pdu:
        message = await self._own_message(runtime, pdu.message_id)
        if message is None:
            return pdu.response(command_status=CommandStatus.ESME_RQUERYFAIL)
        final = is_final(message.status)
        return pdu.response(
            message_id=message.id,
            final_date=format_smpp_time(message.updated_at) if final else "",
            message_state=message_state(message.status),
            error_code=0,
        )

    async def cancel(self, runtime: AccountRuntime, pdu: CancelSm) -> Pdu:
        message = await self._own_message(runtime, pdu.message_id)
        if message is None:
            return pdu.response(command_status=CommandStatus.ESME_RCANCELFAIL)
        ids = [message.id]
        if self._deliveries is not None:  # a submit_multi's id: its other destinations too
            ids += await self._deliveries.find_references(message.tenant, message.id)
        cancelled = [await self._cancel_one(message_id) for message_id in ids]
        if not any(cancelled):
            return pdu.response(command_status=CommandStatus.ESME_RCANCELFAIL)
        return pdu.response()

    async def _cancel_one(self, message_id: str) -> bool:
        gateway = self.gateway
        # Only what still waits in the queue can be recalled; a link may be sending the rest.
        if not gateway.queue.remove(message_id):
            return False
        gateway.dispatcher.forget(message_id)
        change = await gateway.message_store.cancel(
            message_id, at=gateway.clock(), source=StatusSource.OPERATOR
        )
        if not change.changed:  # it was not left waiting after all: queue it again as it is
            record = await gateway.message_store.get(message_id)
            if record is not None and record.message.status in (
                MessageStatus.ACCEPTED,
                MessageStatus.QUEUED,
            ):
                gateway.dispatcher.enqueue(record.message)
            return False
        if change.message is not None:
            gateway.stats.count_final(change.message, gateway.clock())
        return True

    async def _own_message(self, runtime: AccountRuntime, message_id: str) -> Message | None:
        if not message_id:
            return None
        record = await self.gateway.message_store.get(message_id)
        if record is None:
            return None
        message = record.message
        # Another tenant's id (another account's, or an HTTP key's of the same name) answers
        # exactly like an unknown one: nothing leaks.
        if message.tenant != Tenant(Channel.SMPP, runtime.system_id):
            return None
        return message
