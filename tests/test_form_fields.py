from __future__ import annotations

from urllib.parse import urlencode

from tabship.errors import Problem
from tabship.feature import Feature
from tabship.serve.form import MEDIA_TYPE, distinct_labels, parse_form

NEWLINE = "new\nline"
FEATURES = (
    Feature(NEWLINE, "categorical", "string", False, levels=("x", "y")),
    Feature("padded ", "categorical", "string", False, levels=("a", "b")),
)


def test_a_name_with_a_line_break_is_found_as_a_browser_sends_it() -> None:
    # HTML's form encoding sends every line break in a name as CRLF (Chromium does).
    body = urlencode({"new\r\nline": "x", "padded ": "b"}).encode()
    submitted, record, problems = parse_form(body, MEDIA_TYPE, FEATURES)
    assert problems == []
    assert record == {NEWLINE: "x", "padded ": "b"} and submitted[NEWLINE] == "x"


def test_names_that_read_alike_keep_their_own_labels() -> None:
    assert distinct_labels(["Age", "age", "age ", "AGE_", "bmi"]) == {
        "Age": "Age",
        "age": "age",
        "age ": "age ",
        "AGE_": "AGE_",
        "bmi": "Bmi",
    }


def test_messages_quote_a_name_that_would_not_read_as_itself() -> None:
    assert str(Problem("padded ", "is required", 1)) == "row 1: 'padded ': is required"
    assert str(Problem(NEWLINE, "is required")) == "'new\\nline': is required"
    assert str(Problem("age", "is required")) == "age: is required"


def test_a_form_number_is_written_as_json_and_csv_write_one() -> None:
    # Python's float() also reads "4_5" and other scripts' digits; nothing else here does.
    age = (Feature("age", "numeric", "int64", False, integer=True, minimum=18, maximum=64),)
    for text in ("4_5", "٤٥", "0x2d", "1e"):
        body = urlencode({"age": text}).encode()
        assert parse_form(body, MEDIA_TYPE, age)[2] == [
            Problem("age", f"must be a number, got {text!r}")
        ]
    assert parse_form(b"age=45", MEDIA_TYPE, age)[1:] == ({"age": 45}, [])
