"""Delivery receipts: status model, receipt parsing, carrier id normalisation, correlation,
multipart aggregation, receipts to SMPP customers and HTTP callback signing.

Everything here is sans-IO: no sockets, no awaits, no clock (callers pass `now`), no storage.
May import `smpp`; must never import `gateway`.
"""
