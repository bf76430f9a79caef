"""Inbound (MO) traffic: the link-neutral model, reassembly, storage, routing and keywords."""
