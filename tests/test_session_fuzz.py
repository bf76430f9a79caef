"""Mutated PDUs (bench/fuzz_decoder.py) never make the decoder or a server Session raise."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def load_fuzzer() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "bench" / "fuzz_decoder.py"
    spec = importlib.util.spec_from_file_location("fuzz_decoder", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_twenty_thousand_mutated_pdus_raise_nothing_and_every_reply_is_well_formed() -> None:
    report = load_fuzzer().fuzz(20_000, seed=20_000, trace_memory=False)
    # The mutations reached every branch worth reaching: good frames, bad ones, lost framing,
    # sessions refused into closing, and answers written back.
    assert report.decoded > 1_000
    assert report.errors > 1_000
    assert 0 < report.fatal_errors < report.errors
    assert report.sessions > 100
    assert report.replies > 1_000


@pytest.mark.slow
def test_half_a_million_mutations_keep_memory_bounded() -> None:
    report = load_fuzzer().fuzz(500_000, seed=3, trace_memory=True)
    assert report.decoded > 100_000
    assert report.peak_bytes < 16_000_000
