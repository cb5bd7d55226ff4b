"""I3: property tests against the live server, 2,000 examples each, strategies built from the schema."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabship.artifact import Artifact
from tabship.feature import NA_TEXTS
from tabship.schema import Feature, Schema
from tabship.workflow import TrainedModel

from ..servers import Server

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

RUNS = settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def valid_value(feature: Feature) -> st.SearchStrategy[Any]:
    if feature.kind == "categorical":
        return st.sampled_from(feature.known_levels)
    low, high = feature.minimum or 0.0, feature.maximum or 0.0
    # Out-of-range numbers are valid too (answered with a warning): go well past both ends.
    span = max(high - low, 1.0)
    if feature.integer:
        return st.integers(int(low - span), int(high + span))
    return st.floats(low - span, high + span, allow_nan=False, allow_infinity=False)


def invalid_value(feature: Feature) -> st.SearchStrategy[Any]:
    # null (and, for a category, a missing value's spelling such as "NA") is a gap, which
    # the model fills with a warning: valid, tested below.
    wrong_types = st.one_of(
        st.booleans(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    )
    if feature.kind == "categorical":
        levels = set(feature.levels) | NA_TEXTS
        return st.one_of(
            wrong_types,
            st.integers(),
            st.floats(allow_nan=True),
            st.text(max_size=20).filter(lambda t: t not in levels),
        )
    bad_numbers = st.sampled_from([math.nan, math.inf, -math.inf])
    fractional = st.floats(0.01, 0.99).map(lambda f: f + 1) if feature.integer else st.nothing()
    return st.one_of(wrong_types, st.text(max_size=20), bad_numbers, fractional)


def schema_of(model: TrainedModel) -> Schema:
    return Artifact.open(model.artifact.directory).card.schema


def test_any_valid_record_gives_200_and_a_finite_number(
    server: Server, insurance_model: TrainedModel
) -> None:
    schema = schema_of(insurance_model)
    records = st.fixed_dictionaries({f.name: valid_value(f) for f in schema.features})
    client = httpx.Client(base_url=server.url, timeout=30)

    @RUNS
    @given(records)
    def check(record: dict[str, Any]) -> None:
        answer = client.post("/predict_api", json=record)
        assert answer.status_code == 200, (record, answer.text)
        value = answer.json()
        assert isinstance(value, float) and math.isfinite(value)

    try:
        check()
    finally:  # a failed property must not leave its socket to a later test's collector
        client.close()


def test_gaps_anywhere_give_200_a_finite_number_and_a_warning_each(
    server: Server, insurance_model: TrainedModel
) -> None:
    schema = schema_of(insurance_model)
    client = httpx.Client(base_url=server.url, timeout=30)

    @st.composite
    def gapped(draw: st.DrawFn) -> tuple[set[str], dict[str, Any]]:
        record = draw(st.fixed_dictionaries({f.name: valid_value(f) for f in schema.features}))
        names = draw(st.sets(st.sampled_from(schema.names), min_size=1))
        for name in names:
            kind = next(f.kind for f in schema.features if f.name == name)
            gap = st.sampled_from(sorted(NA_TEXTS)) if kind == "categorical" else st.none()
            record[name] = draw(st.one_of(st.none(), gap))
        return names, record

    @settings(RUNS, max_examples=300)
    @given(gapped())
    def check(case: tuple[set[str], dict[str, Any]]) -> None:
        names, record = case
        answer = client.post("/v1/predict", json={"instances": [record]})
        assert answer.status_code == 200, (record, answer.text)
        body = answer.json()
        assert math.isfinite(body["predictions"][0])
        warned = {w.split(":")[0] for w in body["warnings"] if "training had no gaps" in w}
        assert warned == names, (record, body["warnings"])

    try:
        check()
    finally:  # a failed property must not leave its socket to a later test's collector
        client.close()


def test_one_bad_field_gives_4xx_naming_it(server: Server, insurance_model: TrainedModel) -> None:
    schema = schema_of(insurance_model)
    client = httpx.Client(base_url=server.url, timeout=30)

    @st.composite
    def bad_records(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
        record = draw(st.fixed_dictionaries({f.name: valid_value(f) for f in schema.features}))
        feature = draw(st.sampled_from(schema.features))
        record[feature.name] = draw(invalid_value(feature))
        return feature.name, record

    @RUNS
    @given(bad_records())
    def check(case: tuple[str, dict[str, Any]]) -> None:
        field, record = case
        # json.dumps writes NaN and Infinity as the non-standard tokens some clients send.
        body = json.dumps(record).encode()
        answer = client.post(
            "/predict_api", content=body, headers={"content-type": "application/json"}
        )
        assert 400 <= answer.status_code < 500, (record, answer.text)
        assert answer.json()["detail"][0]["field"] == field, (record, answer.text)

    try:
        check()
    finally:  # a failed property must not leave its socket to a later test's collector
        client.close()
