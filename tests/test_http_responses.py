"""Answers the HTTP API writes out by hand are byte for byte what its pydantic models make."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from dlr.status import MessageStatus
from gateway.http import models
from gateway.http.api import accepted_body
from gateway.intake import Prepared

# Lone surrogates cannot be UTF-8 encoded by either path; every other character can.
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@settings(max_examples=500, deadline=None)
@given(
    message_id=_TEXT,
    status=st.sampled_from(list(MessageStatus)),
    destination=_TEXT,
    parts=st.integers(0, 255),
    encoding=_TEXT,
    route=_TEXT,
    reference=st.none() | _TEXT,
)
def test_accepted_json_is_what_the_model_dumps(
    message_id: str,
    status: MessageStatus,
    destination: str,
    parts: int,
    encoding: str,
    route: str,
    reference: str | None,
) -> None:
    message = SimpleNamespace(
        id=message_id, status=status, destination=destination, reference=reference
    )
    item = cast(
        Prepared,
        SimpleNamespace(
            message=message, parts=parts, encoding=encoding, decision=SimpleNamespace(route=route)
        ),
    )
    model = models.MessageAccepted(
        id=message_id,
        status=status.value,
        to="+" + destination,
        parts=parts,
        encoding=encoding,
        route=route,
        reference=reference,
    )
    assert accepted_body([item], single=True) == model.model_dump_json(by_alias=True).encode()
    batch = models.MessageBatchAccepted(messages=[model, model])
    assert (
        accepted_body([item, item], single=False) == batch.model_dump_json(by_alias=True).encode()
    )
