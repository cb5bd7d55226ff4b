"""JSON read fast, with every integer exact: which texts go to the standard library."""

from __future__ import annotations

import json
import random

import pytest

from tabship.exact_json import has_long_digits, loads_exact
from tabship.serve.contract import parse_json

BIG = [2**64 + 1, -(2**70) - 3, 10**30 + 7]


@pytest.mark.parametrize("value", BIG)
def test_integers_past_64_bits_are_read_exactly(value: int) -> None:
    for text in (f"[{value}]", f'{{"a": {value}}}', f"{value}", f"[1.5,{value},2]"):
        data = text.encode()
        assert has_long_digits(data)
        assert loads_exact(data) == json.loads(text)
        assert parse_json(data) == json.loads(text)
    assert loads_exact(f"[{value}]".encode())[0] == value  # not the nearest double


@pytest.mark.parametrize(
    "text",
    [
        "[0.00012345678901234567]",  # how orjson writes a small probability
        '{"p": [0.99987654321098765432, 0.00012345678901234568]}',
        "[12345678901234567890.5]",  # a float's long integer part
        "[12345678901234567890e2, 1234567890123456789012E-3]",
    ],
)
def test_long_fractions_and_floats_take_the_fast_reader(text: str) -> None:
    data = text.encode()
    assert not has_long_digits(data)
    assert loads_exact(data) == json.loads(text)


def test_the_fast_reader_rounds_long_fractions_as_the_standard_library() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(17, 30)))
        text = f"[0.{'0' * rng.randint(0, 6)}{digits}, -{rng.randint(1, 99)}.{digits}]"
        assert loads_exact(text.encode()) == json.loads(text), text


def test_a_long_run_in_a_string_or_an_exponent_errs_towards_the_exact_reader() -> None:
    for text in ('["id 12345678901234567890"]', "[1e0000000000000000000001]"):
        assert has_long_digits(text.encode())
        assert loads_exact(text.encode()) == json.loads(text)
