"""The SMPP session state machine, driven with real PDU bytes and fake clocks (it is sans-IO).

Most tests pair a client-role and a server-role Session and carry bytes between them, so each
side is tested against the other; refusals are tested with hand-made PDUs the well-behaved side
would never send.
"""

from __future__ import annotations

import struct

import pytest

from smpp.codec import PduDecoder, encode
from smpp.constants import CommandId, CommandStatus
from smpp.pdu import (
    AlertNotification,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    SubmitSm,
    SubmitSmResp,
)
from smpp.session import (
    MAX_SEQUENCE_NUMBER,
    BindRequested,
    Bound,
    Event,
    OutbindReceived,
    RequestReceived,
    RequestRefused,
    RequestTimedOut,
    ResponseReceived,
    Role,
    Session,
    SessionConfig,
    SessionState,
    ShouldClose,
    StateForbidsError,
    Unbound,
    UnexpectedResponse,
    WindowFullError,
)

QUIET = SessionConfig(enquire_link_interval=None, bind_timeout=None)


def wire(session: Session) -> list[Pdu]:
    """Decode what a session queued for the wire."""
    items = PduDecoder(65536).feed(session.data_to_send())
    pdus = [item for item in items if isinstance(item, Pdu)]
    assert len(pdus) == len(items)
    return pdus


def carry(sender: Session, receiver: Session, now: float = 0.0) -> list[Event]:
    return receiver.receive_data(sender.data_to_send(), now)


def header(command_length: int, command_id: int, status: int = 0, sequence: int = 1) -> bytes:
    return struct.pack(">IIII", command_length, command_id, status, sequence)


def bound_pair(
    bind: Pdu | None = None, config: SessionConfig = QUIET, now: float = 0.0
) -> tuple[Session, Session]:
    client = Session(Role.CLIENT, config, now)
    server = Session(Role.SERVER, config, now)
    client.send_request(bind or BindTransceiver(system_id="esme", password="pw"), now)
    (request,) = carry(client, server, now)
    assert isinstance(request, BindRequested)
    server.accept_bind(system_id="smsc")
    carry(server, client, now)
    return client, server


# --- bind --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "state"),
    [
        (BindTransmitter(system_id="esme"), SessionState.BOUND_TX),
        (BindReceiver(system_id="esme"), SessionState.BOUND_RX),
        (BindTransceiver(system_id="esme"), SessionState.BOUND_TRX),
    ],
)
def test_accepted_bind_moves_both_ends_from_open_to_the_bound_state_it_names(
    bind: Pdu, state: SessionState
) -> None:
    client = Session(Role.CLIENT, QUIET)
    server = Session(Role.SERVER, QUIET)
    assert client.state is server.state is SessionState.OPEN
    client.send_request(bind, 1.0)
    (requested,) = carry(client, server)
    assert isinstance(requested, BindRequested)
    assert requested.pdu.command_id == bind.command_id
    assert server.state is SessionState.OPEN  # nothing is decided until the application says so
    server.accept_bind(system_id="smsc")
    assert server.state is state
    response, bound = carry(server, client)
    assert isinstance(response, ResponseReceived)
    assert response.request is bind
    assert response.pdu.system_id == "smsc"  # type: ignore[attr-defined]
    assert bound == Bound(state, bind, response.pdu)
    assert client.state is state


def test_rejected_bind_leaves_session_open_and_a_new_bind_may_follow() -> None:
    client = Session(Role.CLIENT, QUIET)
    server = Session(Role.SERVER, QUIET)
    client.send_request(BindTransceiver(system_id="esme", password="wrong"), 0.0)
    carry(client, server)
    server.reject_bind(CommandStatus.ESME_RINVPASWD)
    (response,) = carry(server, client)
    assert isinstance(response, ResponseReceived)
    assert response.pdu.command_status == CommandStatus.ESME_RINVPASWD
    assert client.state is server.state is SessionState.OPEN
    client.send_request(BindTransceiver(system_id="esme", password="right"), 0.0)
    (requested,) = carry(client, server)
    assert isinstance(requested, BindRequested)


def test_client_may_not_send_a_second_bind_while_the_first_is_unanswered() -> None:
    client = Session(Role.CLIENT, QUIET)
    client.send_request(BindTransceiver(), 0.0)
    with pytest.raises(StateForbidsError):
        client.send_request(BindTransmitter(), 0.0)


def test_bind_on_a_bound_session_is_refused_with_ralybnd() -> None:
    client, server = bound_pair()
    events = server.receive_data(encode(BindTransmitter(sequence_number=77)), 1.0)
    assert events == [RequestRefused(CommandId.BIND_TRANSMITTER, 77, CommandStatus.ESME_RALYBND)]
    (answer,) = wire(server)
    assert answer.command_id == CommandId.BIND_TRANSMITTER_RESP
    assert (answer.sequence_number, answer.command_status) == (77, CommandStatus.ESME_RALYBND)
    assert server.state is SessionState.BOUND_TRX
    with pytest.raises(StateForbidsError):
        client.send_request(BindTransceiver(), 1.0)


def test_second_bind_while_the_first_awaits_a_decision_is_refused_with_ralybnd() -> None:
    server = Session(Role.SERVER, QUIET)
    data = encode(BindTransceiver(sequence_number=1)) + encode(BindReceiver(sequence_number=2))
    first, refused = server.receive_data(data, 0.0)
    assert isinstance(first, BindRequested)
    assert refused == RequestRefused(CommandId.BIND_RECEIVER, 2, CommandStatus.ESME_RALYBND)


def test_accept_bind_without_a_pending_bind_is_a_local_error() -> None:
    server = Session(Role.SERVER, QUIET)
    with pytest.raises(StateForbidsError):
        server.accept_bind()
    with pytest.raises(StateForbidsError):
        Session(Role.CLIENT, QUIET).reject_bind(CommandStatus.ESME_RBINDFAIL)


# --- the state table --------------------------------------------------------------------------

# Written from SMPP 3.4 section 2.3 / chapter 4 independently of session.REQUEST_TABLE:
# (request, role that may send it, states in which it may).
TX, RX, TRX = SessionState.BOUND_TX, SessionState.BOUND_RX, SessionState.BOUND_TRX
SPEC_ALLOWED = [
    (SubmitSm, Role.CLIENT, {TX, TRX}),
    (QuerySm, Role.CLIENT, {TX, TRX}),
    (DataSm, Role.CLIENT, {TX, TRX}),
    (DeliverSm, Role.SERVER, {RX, TRX}),
    (DataSm, Role.SERVER, {RX, TRX}),
    (AlertNotification, Role.SERVER, {RX, TRX}),
    (EnquireLink, Role.CLIENT, {SessionState.OPEN, TX, RX, TRX}),
    (EnquireLink, Role.SERVER, {SessionState.OPEN, TX, RX, TRX}),
]
BINDS = {TX: BindTransmitter, RX: BindReceiver, TRX: BindTransceiver}


@pytest.mark.parametrize(("request_type", "sender_role", "allowed"), SPEC_ALLOWED)
@pytest.mark.parametrize("state", [SessionState.OPEN, TX, RX, TRX, SessionState.UNBOUND])
def test_each_request_is_sent_and_accepted_only_in_the_states_the_spec_allows(
    request_type: type[Pdu], sender_role: Role, allowed: set[SessionState], state: SessionState
) -> None:
    if state is SessionState.OPEN:
        client, server = Session(Role.CLIENT, QUIET), Session(Role.SERVER, QUIET)
    else:
        client, server = bound_pair(BINDS.get(state, BindTransceiver)())
        if state is SessionState.UNBOUND:
            client.unbind(0.0)
            carry(client, server)
            server.data_to_send()
    sender, receiver = (client, server) if sender_role is Role.CLIENT else (server, client)
    if state in allowed:
        sender.send_request(request_type(), 1.0)
        events = carry(sender, receiver)
        if request_type is EnquireLink:  # answered by the session itself
            assert events == []
            (answer,) = wire(receiver)
            assert answer.command_id == CommandId.ENQUIRE_LINK_RESP
        else:
            (event,) = events
            assert isinstance(event, RequestReceived)
            assert type(event.pdu) is request_type
    else:
        with pytest.raises(StateForbidsError):
            sender.send_request(request_type(), 1.0)
        # The peer refuses the same request arriving anyway, with the bind-state status.
        (event,) = receiver.receive_data(encode(request_type(sequence_number=5)), 1.0)
        assert event == RequestRefused(request_type.command_id, 5, CommandStatus.ESME_RINVBNDSTS)
        (answer,) = wire(receiver)
        assert answer.sequence_number == 5
        assert answer.command_status == CommandStatus.ESME_RINVBNDSTS
        if request_type is AlertNotification:  # no response PDU exists: generic_nack it is
            assert isinstance(answer, GenericNack)
        else:
            assert answer.command_id == request_type.command_id | 0x80000000


def test_submit_before_bind_is_refused_with_rinvbndsts() -> None:
    server = Session(Role.SERVER, QUIET)
    events = server.receive_data(encode(SubmitSm(sequence_number=3)), 0.0)
    assert events == [RequestRefused(CommandId.SUBMIT_SM, 3, CommandStatus.ESME_RINVBNDSTS)]
    (answer,) = wire(server)
    assert isinstance(answer, SubmitSmResp)
    assert answer.command_status == CommandStatus.ESME_RINVBNDSTS


def test_request_the_role_can_never_receive_is_refused_with_rinvcmdid() -> None:
    client, server = bound_pair()
    (event,) = client.receive_data(encode(SubmitSm(sequence_number=9)), 0.0)
    assert event == RequestRefused(CommandId.SUBMIT_SM, 9, CommandStatus.ESME_RINVCMDID)
    (event,) = server.receive_data(encode(DeliverSm(sequence_number=10)), 0.0)
    assert event == RequestRefused(CommandId.DELIVER_SM, 10, CommandStatus.ESME_RINVCMDID)


# --- requests, responses, sequence numbers, window --------------------------------------------


def test_submit_and_response_are_matched_by_sequence_number() -> None:
    client, server = bound_pair()
    first, second = SubmitSm(destination_addr="1"), SubmitSm(destination_addr="2")
    seq1 = client.send_request(first, 0.0)
    seq2 = client.send_request(second, 0.0)
    assert seq2 == seq1 + 1
    received = carry(client, server)
    assert [type(e) for e in received] == [RequestReceived, RequestReceived]
    # Answer out of order: the client still pairs each response with its own request.
    for event in reversed(received):
        assert isinstance(event, RequestReceived)
        server.send_response(SubmitSmResp(sequence_number=event.pdu.sequence_number))
    events = carry(server, client)
    assert [(e.request, e.pdu.sequence_number) for e in events] == [  # type: ignore[union-attr]
        (second, seq2),
        (first, seq1),
    ]
    assert client.window_used == 0


def test_bytes_arriving_one_at_a_time_still_make_whole_pdus() -> None:
    client, server = bound_pair()
    client.send_request(SubmitSm(short_message=b"hello"), 0.0)
    data = client.data_to_send()
    events: list[Event] = []
    for i in range(len(data)):
        events += server.receive_data(data[i : i + 1], 0.0)
    (event,) = events
    assert isinstance(event, RequestReceived)
    assert event.pdu.short_message == b"hello"  # type: ignore[attr-defined]


def test_sequence_numbers_wrap_from_0x7fffffff_to_1() -> None:
    client, _ = bound_pair()
    client._next_sequence = MAX_SEQUENCE_NUMBER - 1  # reaching it honestly takes 2**31 requests
    seqs = [client.send_request(SubmitSm(), 0.0) for _ in range(3)]
    assert seqs == [MAX_SEQUENCE_NUMBER - 1, MAX_SEQUENCE_NUMBER, 1]
    assert [pdu.sequence_number for pdu in wire(client)] == seqs


def test_sequence_number_still_outstanding_after_a_wrap_is_skipped() -> None:
    client, _ = bound_pair(config=SessionConfig(window=10, enquire_link_interval=None))
    # The bind used 1; after a wrap the next candidate is 1 again (still outstanding here).
    stuck = client.send_request(SubmitSm(), 0.0)
    client._next_sequence = stuck
    assert client.send_request(SubmitSm(), 0.0) == stuck + 1


def test_full_window_refuses_new_requests_until_a_response_frees_a_slot() -> None:
    config = SessionConfig(window=2, enquire_link_interval=None, bind_timeout=None)
    client, server = bound_pair(config=config)
    client.send_request(SubmitSm(), 0.0)
    client.send_request(SubmitSm(), 0.0)
    assert client.window_free == 0
    with pytest.raises(WindowFullError):
        client.send_request(SubmitSm(), 0.0)
    client.send_request(EnquireLink(), 0.0)  # housekeeping does not take a window slot
    first, _second = carry(client, server)  # the enquire_link is answered, not reported
    assert isinstance(first, RequestReceived)
    server.send_response(SubmitSmResp(sequence_number=first.pdu.sequence_number))
    carry(server, client)
    assert client.window_free == 1
    client.send_request(SubmitSm(), 0.0)


def test_unanswered_request_times_out_at_its_deadline_and_frees_its_slot() -> None:
    config = SessionConfig(window=1, response_timeout=5.0, enquire_link_interval=None)
    client, _ = bound_pair(config=config, now=100.0)
    request = SubmitSm()
    seq = client.send_request(request, 100.0)
    assert client.next_deadline() == 105.0
    assert client.handle_timeout(104.9) == []
    assert client.window_free == 0
    assert client.handle_timeout(105.0) == [RequestTimedOut(request)]
    assert client.window_free == 1
    assert client.next_deadline() is None
    # The answer arriving late matches nothing any more.
    (late,) = client.receive_data(encode(SubmitSmResp(sequence_number=seq)), 106.0)
    assert isinstance(late, UnexpectedResponse)


def test_each_request_may_carry_its_own_response_timeout() -> None:
    client, _ = bound_pair(config=SessionConfig(response_timeout=30.0, enquire_link_interval=None))
    slow, quick = SubmitSm(), SubmitSm()
    client.send_request(slow, 0.0)
    client.send_request(quick, 0.0, timeout=2.0)
    assert client.next_deadline() == 2.0
    assert client.handle_timeout(2.0) == [RequestTimedOut(quick)]
    assert client.next_deadline() == 30.0


def test_generic_nack_answering_a_request_is_its_response() -> None:
    client, _ = bound_pair()
    request = SubmitSm()
    seq = client.send_request(request, 0.0)
    nack = GenericNack(sequence_number=seq, command_status=CommandStatus.ESME_RSYSERR)
    (event,) = client.receive_data(encode(nack), 0.0)
    assert event == ResponseReceived(nack, request)


# --- keep-alive and timers --------------------------------------------------------------------


def test_idle_bound_session_sends_enquire_link_and_the_peer_answers_it() -> None:
    config = SessionConfig(enquire_link_interval=30.0, response_timeout=10.0, bind_timeout=None)
    client, server = bound_pair(config=config)
    assert client.next_deadline() == 30.0
    assert client.handle_timeout(29.9) == []
    assert client.data_to_send() == b""
    assert client.handle_timeout(30.0) == []
    (probe,) = wire_copy = [*PduDecoder(65536).feed(client.data_to_send())]
    assert isinstance(probe, EnquireLink), wire_copy
    assert server.receive_data(encode(probe), 30.0) == []  # answered by the session itself
    (answer,) = wire(server)
    assert isinstance(answer, EnquireLinkResp)
    assert answer.sequence_number == probe.sequence_number
    assert client.receive_data(encode(answer), 31.0) == []
    assert client.next_deadline() == 61.0  # next probe counts from the last PDU received


def test_traffic_from_the_peer_postpones_the_enquire_link() -> None:
    config = SessionConfig(enquire_link_interval=30.0, bind_timeout=None)
    client, server = bound_pair(config=config)
    server.send_request(DeliverSm(), 20.0)
    carry(server, client, 20.0)
    assert client.handle_timeout(30.0) == []
    assert client.data_to_send() == b""
    assert client.next_deadline() == 50.0


def test_unanswered_enquire_link_closes_the_session() -> None:
    config = SessionConfig(enquire_link_interval=30.0, response_timeout=10.0, bind_timeout=None)
    client, _ = bound_pair(config=config)
    client.handle_timeout(30.0)
    client.data_to_send()
    assert client.next_deadline() == 40.0
    assert client.handle_timeout(40.0) == [ShouldClose("enquire_link was not answered in time")]
    assert client.state is SessionState.CLOSED
    assert client.next_deadline() is None


def test_inactivity_timeout_unbinds_even_while_enquire_links_are_answered() -> None:
    config = SessionConfig(
        enquire_link_interval=10.0, inactivity_timeout=25.0, response_timeout=5.0, bind_timeout=None
    )
    client, server = bound_pair(config=config)
    now = 0.0
    while client.state is SessionState.BOUND_TRX:
        now = client.next_deadline() or 0.0
        assert client.handle_timeout(now) == []
        server_events = carry(client, server, now)
        carry(server, client, now)
    assert now == 25.0
    assert server_events == [Unbound(by_peer=True)]
    assert client.state is SessionState.UNBOUND


def test_server_closes_a_connection_that_does_not_bind_in_time() -> None:
    server = Session(Role.SERVER, SessionConfig(bind_timeout=15.0), now=50.0)
    assert server.next_deadline() == 65.0
    assert server.handle_timeout(64.0) == []
    assert server.handle_timeout(65.0) == [ShouldClose("not bound in time")]
    assert server.state is SessionState.CLOSED


# --- undecodable input ------------------------------------------------------------------------


def test_unknown_command_id_is_answered_with_generic_nack_and_the_session_goes_on() -> None:
    client, server = bound_pair()
    (event,) = server.receive_data(header(16, 0x00000099, sequence=42), 0.0)
    assert isinstance(event, RequestRefused)
    (nack,) = wire(server)
    assert isinstance(nack, GenericNack)
    assert nack.sequence_number == 42
    assert nack.command_status == event.status == CommandStatus.ESME_RINVCMDID
    client.send_request(SubmitSm(), 0.0)
    (event,) = carry(client, server)
    assert isinstance(event, RequestReceived)


def test_impossible_command_length_is_nacked_and_closes_the_session() -> None:
    _, server = bound_pair()
    events = server.receive_data(header(8, CommandId.SUBMIT_SM, sequence=5) + b"\0" * 64, 0.0)
    assert isinstance(events[0], RequestRefused)
    assert isinstance(events[-1], ShouldClose)
    (nack,) = wire(server)
    assert isinstance(nack, GenericNack)
    assert nack.command_status == CommandStatus.ESME_RINVCMDLEN
    assert server.state is SessionState.CLOSED
    assert server.receive_data(encode(SubmitSm()), 1.0) == []


def test_undecodable_body_is_answered_with_its_own_response_and_the_decoders_status() -> None:
    _, server = bound_pair()
    body = b"\xff" * 5  # a submit_sm body cut off inside its first C-Octet String
    events = server.receive_data(header(16 + len(body), CommandId.SUBMIT_SM, sequence=8) + body, 0)
    (refused,) = events
    assert isinstance(refused, RequestRefused)
    assert refused.status != CommandStatus.ESME_ROK
    (answer,) = wire(server)
    assert isinstance(answer, SubmitSmResp)
    assert (answer.sequence_number, answer.command_status) == (8, refused.status)
    assert server.state is SessionState.BOUND_TRX


def test_undecodable_response_is_not_answered_and_its_request_times_out() -> None:
    client, _ = bound_pair(config=SessionConfig(response_timeout=5.0, enquire_link_interval=None))
    request = SubmitSm()
    seq = client.send_request(request, 0.0)
    client.data_to_send()
    body = b"x" * 70  # message_id longer than its 65-octet limit, no terminator
    data = header(16 + len(body), CommandId.SUBMIT_SM_RESP, sequence=seq) + body
    assert client.receive_data(data, 1.0) == []
    assert client.data_to_send() == b""
    assert client.handle_timeout(5.0) == [RequestTimedOut(request)]


# --- unbind -----------------------------------------------------------------------------------


def test_client_unbind_handshake_ends_in_unbound_on_both_ends() -> None:
    client, server = bound_pair()
    client.unbind(0.0)
    assert client.state is SessionState.UNBOUND
    with pytest.raises(StateForbidsError):
        client.send_request(SubmitSm(), 0.0)
    assert carry(client, server) == [Unbound(by_peer=True)]
    assert server.state is SessionState.UNBOUND
    assert carry(server, client) == [Unbound(by_peer=False)]


def test_server_may_unbind_the_client_too() -> None:
    client, server = bound_pair()
    server.unbind(0.0)
    assert carry(server, client) == [Unbound(by_peer=True)]
    assert carry(client, server) == [Unbound(by_peer=False)]


def test_crossing_unbinds_are_both_answered() -> None:
    client, server = bound_pair()
    client.unbind(0.0)
    server.unbind(0.0)
    to_server, to_client = client.data_to_send(), server.data_to_send()
    assert server.receive_data(to_server, 0.0) == [Unbound(by_peer=True)]
    assert client.receive_data(to_client, 0.0) == [Unbound(by_peer=True)]
    assert carry(server, client) == [Unbound(by_peer=False)]
    assert carry(client, server) == [Unbound(by_peer=False)]


def test_responses_to_requests_sent_before_unbind_still_arrive() -> None:
    client, server = bound_pair()
    request = SubmitSm()
    seq = client.send_request(request, 0.0)
    client.unbind(0.0)
    carry(client, server)
    server.send_response(SubmitSmResp(sequence_number=seq, message_id="m1"))
    events = carry(server, client)
    response = SubmitSmResp(sequence_number=seq, message_id="m1")
    assert events == [Unbound(by_peer=False), ResponseReceived(response, request)]


def test_unanswered_unbind_closes_the_session() -> None:
    client, _ = bound_pair(config=SessionConfig(response_timeout=3.0, enquire_link_interval=None))
    client.unbind(10.0)
    assert client.handle_timeout(13.0) == [ShouldClose("unbind was not answered in time")]


def test_close_hands_back_unanswered_requests() -> None:
    client, _ = bound_pair()
    requests = [SubmitSm(), SubmitSm()]
    for request in requests:
        client.send_request(request, 0.0)
    assert client.close() == requests
    assert client.state is SessionState.CLOSED
    with pytest.raises(StateForbidsError):
        client.send_request(SubmitSm(), 0.0)


# --- outbind ----------------------------------------------------------------------------------


def test_outbind_invites_the_client_to_bind_as_receiver() -> None:
    client = Session(Role.CLIENT, QUIET)
    server = Session(Role.SERVER, QUIET)
    outbind = Outbind(system_id="smsc", password="pw")
    server.send_request(outbind, 0.0)
    assert server.outstanding == 0  # outbind has no response to wait for
    (invited,) = carry(server, client)
    assert isinstance(invited, OutbindReceived)
    assert invited.pdu == Outbind(sequence_number=1, system_id="smsc", password="pw")
    client.send_request(BindReceiver(system_id="esme", password="pw"), 0.0)
    (requested,) = carry(client, server)
    assert isinstance(requested, BindRequested)
    server.accept_bind(system_id="smsc")
    _, bound = carry(server, client)
    assert isinstance(bound, Bound)
    assert client.state is server.state is SessionState.BOUND_RX


def test_only_the_server_sends_outbind_and_only_before_bind() -> None:
    with pytest.raises(StateForbidsError):
        Session(Role.CLIENT, QUIET).send_request(Outbind(), 0.0)
    client, server = bound_pair()
    with pytest.raises(StateForbidsError):
        server.send_request(Outbind(), 0.0)
    (event,) = client.receive_data(encode(Outbind(sequence_number=4)), 0.0)
    assert event == RequestRefused(CommandId.OUTBIND, 4, CommandStatus.ESME_RINVBNDSTS)
    (nack,) = wire(client)
    assert isinstance(nack, GenericNack)


def test_answer_to_a_request_read_just_before_a_fatal_error_is_dropped_quietly() -> None:
    _, server = bound_pair()
    data = encode(SubmitSm(sequence_number=5)) + header(3, CommandId.SUBMIT_SM, sequence=6)
    received, refused, closing = server.receive_data(data, 0.0)
    assert isinstance(received, RequestReceived)
    assert isinstance(refused, RequestRefused) and isinstance(closing, ShouldClose)
    server.data_to_send()
    assert server.send_response(SubmitSmResp(sequence_number=5)) is False
    assert server.data_to_send() == b""


def test_bind_decided_after_the_session_closed_sends_nothing_and_stays_closed() -> None:
    server = Session(Role.SERVER, SessionConfig(bind_timeout=1.0))
    server.receive_data(encode(BindTransceiver(sequence_number=1)), 0.0)
    assert server.handle_timeout(1.0) == [ShouldClose("not bound in time")]
    assert server.accept_bind() is False
    assert server.reject_bind(CommandStatus.ESME_RBINDFAIL) is False
    assert server.data_to_send() == b""
    assert server.state is SessionState.CLOSED


def test_bind_read_together_with_fatal_garbage_cannot_be_accepted_afterwards() -> None:
    server = Session(Role.SERVER, QUIET)
    data = encode(BindTransceiver(sequence_number=1)) + header(0xFFFFFFFF, 0)
    requested, _refused, closing = server.receive_data(data, 0.0)
    assert isinstance(requested, BindRequested) and isinstance(closing, ShouldClose)
    server.data_to_send()
    assert server.accept_bind() is False
    assert server.state is SessionState.CLOSED
    assert server.data_to_send() == b""


@pytest.mark.parametrize(
    "bad", [{"window": 0}, {"response_timeout": 0.0}, {"enquire_link_interval": -1.0}]
)
def test_config_refuses_an_empty_window_and_non_positive_times(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SessionConfig(**bad)  # type: ignore[arg-type]
