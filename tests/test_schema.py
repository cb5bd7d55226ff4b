from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tabship.errors import RecordError
from tabship.profile import infer_schema
from tabship.schema import MISSING_LEVEL, Feature, Schema

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


def test_ignores_id_constant_empty_and_date_columns(tiny_table: pd.DataFrame) -> None:
    frame = tiny_table.assign(
        row_id=np.arange(len(tiny_table)),
        customer=[f"c{i:04d}" for i in range(len(tiny_table))],
        plan="basic",
        notes=np.nan,
        seen=pd.date_range("2024-01-01", periods=len(tiny_table)),
    )
    inferred, warnings = infer_schema(frame, "charges")
    assert "row_id" not in inferred.names and "customer" not in inferred.names
    assert {"plan", "notes", "seen"}.isdisjoint(inferred.names)
    text = "\n".join(warnings)
    assert "'row_id' numbers the rows" in text
    assert "'customer' looks like an ID" in text
    assert "'plan' has the single value 'basic'" in text
    assert "'notes' is empty in every row" in text
    assert "'seen' holds dates" in text


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


def test_validate_builds_engine_arrays(schema: Schema) -> None:
    batch = schema.validate([GOOD, {**GOOD, "age": 50.0, "smoker": "yes"}])
    assert batch.rows == 2
    assert batch.columns["age"].shape == (2, 1) and batch.columns["age"].dtype == np.float64
    assert batch.columns["smoker"].dtype == object
    assert batch.columns["smoker"][:, 0].tolist() == ["no", "yes"]
    assert batch.warnings == []


def test_unknown_category_lists_allowed_levels(schema: Schema) -> None:
    assert problems(schema, [{**GOOD, "smoker": "male"}]) == [
        "smoker: 'male' is not one of: no, yes"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"age": None}, "age: is required; null is not allowed"),
        ({"age": "40"}, "age: must be a number, got str '40'"),
        ({"age": True}, "age: must be a number, got bool True"),
        ({"bmi": float("nan")}, "bmi: must be a finite number, got nan"),
        ({"bmi": float("inf")}, "bmi: must be a finite number, got inf"),
        ({"children": 1.5}, "children: must be a whole number, got 1.5"),
        ({"smoker": None}, "smoker: is required; one of: no, yes"),
        ({"smoker": 1}, "smoker: must be a string, one of: no, yes; got int"),
        ({"smoker": ["no"]}, "smoker: must be a string, one of: no, yes; got list"),
    ],
)
def test_each_bad_value_names_its_field(
    schema: Schema, change: dict[str, object], expected: str
) -> None:
    assert problems(schema, [{**GOOD, **change}]) == [expected]


def test_missing_and_extra_fields(schema: Schema) -> None:
    record = {k: v for k, v in GOOD.items() if k != "region"} | {"sex": "male"}
    found = problems(schema, [record])
    assert found[0] == "region: is missing; this field is required"
    assert found[1].startswith("sex: is not a field of this model; fields: age, bmi")


def test_every_bad_field_reported_at_once_with_rows(schema: Schema) -> None:
    found = problems(schema, [GOOD, {**GOOD, "age": "x", "smoker": "maybe"}, "not a record"])
    assert found == [
        "row 1: age: must be a number, got str 'x'",
        "row 1: smoker: 'maybe' is not one of: no, yes",
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
    frame = tiny_table.drop(columns="charges").astype({"age": object})
    frame.loc[2, "age"] = "forty"
    frame.loc[5, "smoker"] = "sometimes"
    with pytest.raises(RecordError) as caught:
        schema.validate_frame(frame, first_row=101)
    assert [str(p) for p in caught.value.problems] == [
        "row 103: age: 'forty' is not a number",
        "row 106: smoker: 'sometimes' is not one of: no, yes",
    ]


def test_validate_frame_missing_column_and_range_warning(
    schema: Schema, tiny_table: pd.DataFrame
) -> None:
    with pytest.raises(RecordError, match="region: column is missing"):
        schema.validate_frame(tiny_table.drop(columns="region"))
    wide = tiny_table.assign(bmi=tiny_table["bmi"] * 3)
    batch = schema.validate_frame(wide)
    assert any(
        w.startswith("bmi: ") and "rows outside the training range" in w for w in batch.warnings
    )


def test_bool_columns_are_categorical() -> None:
    feature = Feature("member", "categorical", "bool", False, levels=("False", "True"))
    schema = Schema((feature,))
    assert schema.validate([{"member": True}]).columns["member"][0, 0] == "True"
