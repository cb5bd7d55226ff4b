from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tabship.errors import RecordError
from tabship.profile import infer_schema
from tabship.schema import MAX_LISTED_PROBLEMS, MISSING_LEVEL, UNSEEN_LEVEL, Feature, Schema

GOOD = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "no", "region": "south"}


@pytest.fixture
def schema(tiny_table: pd.DataFrame) -> Schema:
    inferred, warnings = infer_schema(tiny_table, "charges")
    assert warnings == []
    return inferred


def problems(schema: Schema, records: object) -> list[str]:
    with pytest.raises(RecordError) as caught:
        schema.validate(records)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def test_infers_kinds_ranges_and_levels(schema: Schema) -> None:
    by_name = {f.name: f for f in schema.features}
    assert schema.names == ["age", "bmi", "children", "smoker", "region"]
    assert by_name["age"].kind == "numeric" and by_name["age"].integer
    assert by_name["children"].kind == "numeric" and by_name["children"].integer
    assert by_name["bmi"].kind == "numeric" and not by_name["bmi"].integer
    assert by_name["smoker"].levels == ("no", "yes")
    assert by_name["region"].levels == ("east", "north", "south")
    assert 18 <= by_name["age"].minimum < by_name["age"].maximum <= 64  # type: ignore[operator]
    assert not any(f.allow_missing for f in schema.features)


def test_schema_round_trips_through_json_form(schema: Schema) -> None:
    assert Schema.from_dict(schema.to_dict()) == schema


def test_ignores_id_constant_and_empty_columns_keeps_dates(tiny_table: pd.DataFrame) -> None:
    frame = tiny_table.assign(
        row_id=np.arange(len(tiny_table)),
        customer=[f"c{i:04d}" for i in range(len(tiny_table))],
        plan="basic",
        notes=np.nan,
        seen=pd.date_range("2024-01-01", periods=len(tiny_table)),
    )
    inferred, warnings = infer_schema(frame, "charges")
    assert "row_id" not in inferred.names and "customer" not in inferred.names
    assert {"plan", "notes"}.isdisjoint(inferred.names)
    text = "\n".join(warnings)
    assert "'row_id' numbers the rows" in text
    assert "'customer' looks like an ID" in text
    assert "'plan' has the single value 'basic'" in text
    assert "'notes' is empty in every row" in text
    # Dates are features now, expanded into calendar parts (tests/test_dates.py).
    assert next(f for f in inferred.features if f.name == "seen").kind == "date"


def test_missing_values_become_allowed(tiny_table: pd.DataFrame) -> None:
    frame = tiny_table.astype({"bmi": float, "region": object})
    frame.loc[3, "bmi"] = np.nan
    frame.loc[4, "region"] = None
    inferred, _ = infer_schema(frame, "charges")
    by_name = {f.name: f for f in inferred.features}
    assert by_name["bmi"].allow_missing
    assert by_name["region"].allow_missing and by_name["region"].levels[0] == MISSING_LEVEL
    batch = inferred.validate([{**GOOD, "bmi": None, "region": None}])
    assert math.isnan(batch.columns["bmi"][0, 0])
    assert batch.columns["region"][0, 0] == MISSING_LEVEL


def older_card(schema: Schema) -> Schema:
    """The schema as a card written before pipelines always imputed (no "fills_gaps")."""
    data = schema.to_dict()
    for feature in data:
        del feature["fills_gaps"]
    return Schema.from_dict(data)


def test_a_gap_where_training_had_none_is_filled_with_a_warning(
    schema: Schema, tiny_table: pd.DataFrame
) -> None:
    batch = schema.validate([{**GOOD, "age": None, "smoker": "NA", "region": None}])
    assert math.isnan(batch.columns["age"][0, 0])
    assert batch.columns["smoker"][0, 0] == batch.columns["region"][0, 0] == MISSING_LEVEL
    assert batch.warnings == [
        "age: empty, though training had no gaps here; filled with the training median",
        "smoker: empty, though training had no gaps here; predicted as for a value unseen "
        "in training",
        "region: empty, though training had no gaps here; predicted as for a value unseen "
        "in training",
    ]
    assert batch.unseen == {}
    frame = tiny_table.drop(columns="charges").astype({"bmi": float, "smoker": object})
    frame.loc[[2, 5], "bmi"] = np.nan
    frame.loc[7, "smoker"] = None
    table = schema.validate_frame(frame)
    assert table.filled == {"bmi": 2, "smoker": 1}
    assert table.warnings == [
        "bmi: 2 cells empty, though training had no gaps here; filled with the training median",
        "smoker: 1 cell empty, though training had no gaps here; predicted as for a value "
        "unseen in training",
    ]
    # A model whose pipeline has no imputer for them refuses gaps, as it always did.
    old = older_card(schema)
    assert problems(old, [{**GOOD, "age": None}]) == ["age: is required; it cannot be empty"]
    with pytest.raises(RecordError):
        old.validate_frame(frame)


def test_validate_builds_engine_arrays(schema: Schema) -> None:
    batch = schema.validate([GOOD, {**GOOD, "age": 50.0, "smoker": "yes"}])
    assert batch.rows == 2
    assert batch.columns["age"].shape == (2, 1) and batch.columns["age"].dtype == np.float64
    assert batch.columns["smoker"].dtype == object
    assert batch.columns["smoker"][:, 0].tolist() == ["no", "yes"]
    assert batch.warnings == []


def test_unseen_category_is_predicted_as_unknown_with_a_warning(schema: Schema) -> None:
    batch = schema.validate([{**GOOD, "smoker": "male"}])
    assert batch.columns["smoker"][0, 0] == UNSEEN_LEVEL
    assert batch.unseen == {"smoker": 1}
    assert batch.warnings == [
        "smoker: 'male' is not one of the 2 values seen in training (e.g. no, yes); "
        "predicted as unknown"
    ]


def test_strict_categories_refuse_unseen_values(schema: Schema) -> None:
    with pytest.raises(RecordError) as caught:
        schema.validate([{**GOOD, "smoker": "male"}], strict_categories=True)
    assert [str(p) for p in caught.value.problems] == [
        "smoker: 'male' is not one of the 2 values seen in training (e.g. no, yes)"
    ]


def test_messages_list_at_most_ten_levels() -> None:
    feature = Feature(
        "code", "categorical", "string", False, levels=tuple(f"c{i:03d}" for i in range(301))
    )
    message = feature.unseen_message("zzz")
    assert message.startswith("'zzz' is not one of the 301 values seen in training (e.g. c000, ")
    assert message.endswith("c009, ...)") and "c010" not in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"age": "40"}, "age: must be a number, got '40'"),
        ({"age": True}, "age: must be a number, got true"),
        (
            {"bmi": float("nan")},
            "bmi: must be a finite number between -3.4e+38 and 3.4e+38, got NaN",
        ),
        (
            {"bmi": float("inf")},
            "bmi: must be a finite number between -3.4e+38 and 3.4e+38, got Infinity",
        ),
        ({"bmi": 1e308}, "bmi: must be a finite number between -3.4e+38 and 3.4e+38, got 1e+308"),
        ({"age": 10**4000}, "age: must be a finite number between -3.4e+38 and 3.4e+38, got 1000"),
        ({"children": 1.5}, "children: must be a whole number, got 1.5"),
        ({"smoker": 1}, "smoker: must be text, got 1"),
        ({"smoker": ["no"]}, 'smoker: must be text, got ["no"]'),
    ],
)
def test_each_bad_value_names_its_field(
    schema: Schema, change: dict[str, object], expected: str
) -> None:
    found = problems(schema, [{**GOOD, **change}])
    assert len(found) == 1 and found[0].startswith(expected)


def test_missing_and_extra_fields(schema: Schema) -> None:
    record = {k: v for k, v in GOOD.items() if k != "region"} | {"sex": "male"}
    found = problems(schema, [record])
    assert found == [  # the unknown field first: it may be the missing one misspelt
        "sex: is not a field of this model",
        "region: is missing; this field is required",
        "(record): 1 unknown field(s); the fields are 'age', 'bmi', 'children', 'smoker', 'region'",
    ]


def test_the_training_tables_other_columns_are_skipped_a_typo_is_named(schema: Schema) -> None:
    carrying = Schema(schema.features, frozenset({"charges", "patient_id"}))
    batch = carrying.validate([{**GOOD, "charges": 1.5, "patient_id": "P7"}])
    assert batch.rows == 1 and batch.warnings == []
    assert (
        problems(schema, [{**GOOD, "charges": 1.5}])[0] == "charges: is not a field of this model"
    )
    typo = {k: v for k, v in GOOD.items() if k != "smoker"} | {"Smoker ": "no", "patient": 1}
    assert problems(carrying, [typo]) == [
        "'Smoker ': is not a field of this model; did you mean 'smoker'?",
        "patient: is not a field of this model",
        "smoker: is missing; this field is required",
        "(record): 2 unknown field(s); the fields are 'age', 'bmi', 'children', 'smoker', 'region'",
    ]


def test_thousands_of_unknown_fields_are_capped_and_the_fields_named_once(schema: Schema) -> None:
    record = {**GOOD, **{f"x{i}": 1 for i in range(80_000)}}
    found = problems(schema, [record])
    assert len(found) <= MAX_LISTED_PROBLEMS + 1
    assert found[-1].startswith("(record): 80000 unknown field(s); the fields are 'age'")
    assert sum("'age', 'bmi'" in line for line in found) == 1


def test_every_bad_field_reported_at_once_with_rows(schema: Schema) -> None:
    found = problems(schema, [GOOD, {**GOOD, "age": "x", "smoker": 7}, "not a record"])
    assert found == [
        "row 1: age: must be a number, got 'x'",
        "row 1: smoker: must be text, got 7",
        "row 2: (record): must be an object of field: value",
    ]


@pytest.mark.parametrize("records", [[], "text", {"age": 1}])
def test_empty_or_non_list_input(schema: Schema, records: object) -> None:
    assert problems(schema, records)[0].startswith("instances: ")


def test_out_of_range_is_a_warning(schema: Schema) -> None:
    batch = schema.validate([{**GOOD, "bmi": 59}])
    assert len(batch.warnings) == 1
    assert batch.warnings[0].startswith("bmi: 59 is outside the training range")


def test_validate_frame_flags_rows_by_number(schema: Schema, tiny_table: pd.DataFrame) -> None:
    frame = tiny_table.drop(columns="charges").astype({"age": object, "bmi": object})
    frame.loc[2, "age"] = "forty"
    frame.loc[3, "bmi"] = 1e300
    frame.loc[5, "smoker"] = "sometimes"
    with pytest.raises(RecordError) as caught:
        schema.validate_frame(frame, first_row=101, strict_categories=True)
    assert [str(p) for p in caught.value.problems] == [
        "row 103: age: must be a number, got 'forty'",
        "row 104: bmi: must be a finite number between -3.4e+38 and 3.4e+38, got 1e+300",
        "row 106: smoker: 'sometimes' is not one of the 2 values seen in training (e.g. no, yes)",
    ]


def test_validate_frame_counts_unseen_values_per_field(
    schema: Schema, tiny_table: pd.DataFrame
) -> None:
    frame = tiny_table.drop(columns="charges")
    frame.loc[[1, 4, 9], "region"] = ["west", "west", "=cmd"]
    frame.loc[7, "smoker"] = "sometimes"
    batch = schema.validate_frame(frame)
    assert batch.unseen == {"smoker": 1, "region": 3}
    assert batch.columns["region"][[1, 4, 9], 0].tolist() == [UNSEEN_LEVEL] * 3
    assert batch.columns["region"][0, 0] == frame.loc[0, "region"]
    assert batch.warnings == []  # counted per field; `tabship predict` reports a file's total


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("age", "forty", "forty"),
        ("bmi", float("inf"), "inf"),
        ("bmi", 1e300, "1e300"),
        ("children", 1.5, "1.5"),
        ("smoker", None, ""),
        ("age", None, ""),
    ],
)
def test_the_same_fault_reads_the_same_in_json_form_and_table(
    schema: Schema, tiny_table: pd.DataFrame, field: str, value: object, text: str
) -> None:
    """One rule per fault: the JSON path, the form's text and a table cell give one message."""
    schema = older_card(schema)  # a gap is a fault only for models that cannot fill one
    feature = next(f for f in schema.features if f.name == field)
    from_json = problems(schema, [{**GOOD, field: value}])
    from_form = feature.read_text(text)[1]
    frame = tiny_table.drop(columns="charges").head(3).astype({field: object})
    frame.loc[1, field] = value
    with pytest.raises(RecordError) as caught:
        schema.validate_frame(frame)
    from_table = caught.value.problems[0]
    assert from_json == [f"{field}: {from_form}"]
    assert (from_table.field, from_table.message) == (field, from_form)


def test_bool_columns_are_categorical() -> None:
    feature = Feature("member", "categorical", "bool", False, levels=("False", "True"))
    schema = Schema((feature,))
    assert schema.validate([{"member": True}]).columns["member"][0, 0] == "True"


COLUMN_CASES = [
    [GOOD],
    [GOOD, {**GOOD, "bmi": 70.0, "smoker": "maybe", "age": 99}],
    [{**GOOD, "age": 40.5}, {**GOOD, "children": None}, {**GOOD, "bmi": "31"}],
    [{**GOOD, "bmi": math.nan}, {**GOOD, "age": 10**400}, {**GOOD, "region": 5}],
    [{**GOOD, "age": True}, {**GOOD, "bmi": 3.5e38}, {**GOOD, "age": 2**128 + 1}],
    [{**GOOD, "region": ""}, {**GOOD, "smoker": None}, {**GOOD, "region": ["x"]}],
    [{**GOOD, "bmi": float(b)} for b in range(25)],
    [{**GOOD, "bmi": "x", "age": "y"} for _ in range(30)],
    # 40 rows: whole columns checked at once (ranges warned per row), or one bad value among them.
    [{**GOOD, "bmi": float(b), "age": 10 + 2 * b} for b in range(40)],
    [{**GOOD, "bmi": 1e39 if b == 33 else 30.0, "children": b % 4} for b in range(40)],
]


@pytest.mark.parametrize("records", COLUMN_CASES)
@pytest.mark.parametrize("strict", [False, True])
def test_columns_validate_exactly_as_records_do(
    schema: Schema, records: list[dict[str, object]], strict: bool
) -> None:
    columns = {name: [record[name] for record in records] for name in schema.names}
    try:
        expected = schema.validate(records, strict_categories=strict)
    except RecordError as refused:
        with pytest.raises(RecordError) as caught:
            schema.validate_columns(columns, len(records), strict_categories=strict)
        assert caught.value.problems == refused.problems
        return
    got = schema.validate_columns(columns, len(records), strict_categories=strict)
    assert got.warnings == expected.warnings and got.unseen == expected.unseen
    assert got.rows == expected.rows and list(got.columns) == list(expected.columns)
    for name, column in expected.columns.items():
        assert got.columns[name].dtype == column.dtype
        assert got.columns[name].tolist() == column.tolist()


def test_a_name_that_would_not_read_as_itself_is_quoted_in_warnings() -> None:
    # A column name reaches terminal lines and JSON warnings: an escape sequence is shown.
    feature = Feature("\x1b[31mred", "numeric", "float64", False, minimum=0.0, maximum=1.0,
                      fills_gaps=True)  # fmt: skip
    batch = Schema((feature,)).validate([{"\x1b[31mred": 5.0}, {"\x1b[31mred": None}])
    assert all(w.split(": ", 1)[1].startswith("'\\x1b[31mred'") for w in batch.warnings)


def test_a_file_spelling_of_missing_in_a_number_or_date_field_says_to_send_null() -> None:
    # A CSV's "NA" is an empty cell; a request's number or date field is missing as null.
    age = Feature("age", "numeric", "float", False, minimum=18, maximum=64, fills_gaps=True)
    when = Feature("when", "date", "date", False, fills_gaps=True)
    for feature in (age, when):
        for text in ("NA", "", "n/a"):
            _, problem, _ = feature.read(text)
            assert problem is not None and problem.endswith("a missing value is sent as null")
        assert feature.read(None)[1] is None
        _, problem, _ = feature.read("soon")
        assert problem is not None and "null" not in problem
    old = Feature("age", "numeric", "float", False, minimum=18, maximum=64)  # refuses gaps
    assert "null" not in (old.read("NA")[1] or "")


def test_a_missing_column_names_the_one_the_table_spells_otherwise() -> None:
    schema = Schema(
        (
            Feature("age", "numeric", "float", False, minimum=18, maximum=64),
            Feature("region", "categorical", "string", False, levels=("north", "south")),
        )
    )
    frame = pd.DataFrame({"age ": [30], "Region": ["north"], "agent_id": [7]})
    with pytest.raises(RecordError) as caught:
        schema.validate_frame(frame)
    said = {p.field: p.message for p in caught.value.problems}
    assert said["age"].endswith("the table has 'age ': rename it to 'age'")
    assert said["region"].endswith("the table has 'Region': rename it to 'region'")
    frame = pd.DataFrame({"agent_id": [7], "region": ["north"]})  # not a spelling of age
    with pytest.raises(RecordError, match="age: column is missing from the table$"):
        schema.validate_frame(frame)


def test_an_unknown_field_is_named_even_when_a_wide_model_misses_many() -> None:
    schema = Schema(
        tuple(
            Feature(f"s{i:03}", "numeric", "float", False, minimum=0, maximum=1) for i in range(40)
        )
    )
    with pytest.raises(RecordError) as caught:
        schema.validate([{"s000": 0.5, "foo": 2}])
    fields = [p.field for p in caught.value.problems]
    assert fields[0] == "foo" and "(record)" in fields and "s001" in fields


def test_a_huge_number_is_quoted_as_the_client_wrote_it_not_as_a_floats_digits() -> None:
    age = Feature("age", "numeric", "float", False, minimum=18, maximum=64)
    warning = age.read(1e30)[2]
    assert warning is not None and warning.startswith("age: 1e+30 is outside")
    assert (age.read(100)[2] or "").startswith("age: 100 is outside")


def test_a_float32_reading_of_the_training_minimum_is_inside_the_range() -> None:
    # A CSV trained the minimum as 0.02; a Parquet float32 column holds 0.0199999995.
    x = Feature("x", "numeric", "float64", False, minimum=0.02, maximum=5.0)
    near = float(np.float32(0.02))
    assert near < 0.02 and x.read(near)[2] is None
    assert x.read(0.0199)[2] is not None  # a real step outside still is
    schema = Schema((x,))
    frame = pd.DataFrame({"x": np.array([0.02, 5.0, 0.0199], dtype=np.float32)})
    assert schema.validate_frame(frame).outside == {"x": 1}
    assert schema.validate_columns({"x": [near] * 100}, 100).warnings == []  # columns too


def test_an_unseen_value_message_cuts_long_training_levels() -> None:
    long = "L" * 300
    feature = Feature(name="kind", kind="categorical", dtype="string", allow_missing=False,
                      levels=(long, "b"))  # fmt: skip
    message = feature.unseen_message("c")
    assert len(message) < 150 and "L" * 39 + "\u2026, b" in message
