"""The web form: fields generated from the schema, submitted values parsed back to records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader, select_autoescape

from tabship.errors import MalformedBodyError, MediaTypeError, Problem
from tabship.predictor import Prediction, Predictor
from tabship.schema import MISSING_LEVEL, Feature
from tabship.serve.contract import media_type

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
_environment = Environment(
    loader=PackageLoader("tabship.serve", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def readable(name: str) -> str:
    """A column name as a person reads it: 'bmi' -> 'Bmi', 'num_children' -> 'Num children'."""
    text = name.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:] if text else name


@dataclass
class Field:
    """One input of the form, as the template draws it."""

    name: str
    label: str
    kind: str
    value: str = ""
    error: str = ""
    minimum: str = ""
    maximum: str = ""
    step: str = "any"
    options: list[str] = field(default_factory=list)
    required: bool = True
    hint: str = ""


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def fields_for(
    predictor: Predictor,
    values: dict[str, str] | None = None,
    problems: list[Problem] | None = None,
) -> list[Field]:
    """Form fields with the submitted values and any problem beside its field."""
    values = values or {}
    errors: dict[str, str] = {}
    for problem in problems or []:
        errors.setdefault(problem.field, problem.message)
    out = []
    for feature in predictor.schema.features:
        item = Field(
            name=feature.name,
            label=readable(feature.name),
            kind=feature.kind,
            value=values.get(feature.name, ""),
            error=errors.get(feature.name, ""),
            required=not feature.allow_missing,
        )
        if feature.kind == "numeric":
            item.minimum, item.maximum = (
                _number_text(feature.minimum),
                _number_text(feature.maximum),
            )
            item.step = "1" if feature.integer else "any"
            item.hint = f"seen in training: {item.minimum} to {item.maximum}"
        else:
            item.options = [level for level in feature.levels if level != MISSING_LEVEL]
        out.append(item)
    return out


def parse_form(
    body: bytes, content_type: str | None, features: tuple[Feature, ...]
) -> tuple[dict[str, str], dict[str, Any], list[Problem]]:
    """Submitted text, the typed record, and the problems found while typing it."""
    media = media_type(content_type)
    if media != FORM_MEDIA_TYPE:
        raise MediaTypeError(
            f"content type {media or 'none'!r} is not accepted; submit the form as {FORM_MEDIA_TYPE}"
        )
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=1000
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedBodyError(f"body: not a readable form ({exc})") from None
    submitted = {key: value.strip() for key, value in pairs}
    record: dict[str, Any] = {}
    problems: list[Problem] = []
    for feature in features:
        text = submitted.get(feature.name, "")
        if text == "":
            record[feature.name] = None
            if not feature.allow_missing:
                problems.append(Problem(feature.name, "is required; enter a value"))
        elif feature.kind == "numeric":
            try:
                number = float(text)
            except ValueError:
                problems.append(Problem(feature.name, f"{text!r:.40} is not a number"))
                continue
            record[feature.name] = (
                int(number) if feature.integer and number.is_integer() else number
            )
        else:
            record[feature.name] = text
    return submitted, record, problems


def render_page(
    predictor: Predictor,
    fields: list[Field],
    prediction: Prediction | None = None,
    report: bool = False,
) -> str:
    """The whole HTML page: form, and the prediction with its warnings when there is one."""
    meta = predictor.metadata
    result = None
    if prediction is not None:
        result = _describe(predictor, prediction)
    best = meta["model"]
    template = _environment.get_template("index.html")
    return template.render(
        title=meta.get("target_label") or readable(predictor.target),
        fields=fields,
        result=result,
        warnings=prediction.warnings if prediction else [],
        model_label=best["label"],
        engine=meta["engine"],
        cv=best["cv"],
        sort_by=meta.get("sort_by", ""),
        report=report,
    )


def _describe(predictor: Predictor, prediction: Prediction) -> dict[str, Any]:
    meta = predictor.metadata
    label = meta.get("target_label") or readable(predictor.target)
    unit = meta.get("unit") or ""
    value = prediction.values[0]
    if predictor.task == "regression":
        return {"label": label, "value": f"{value:,.2f}", "unit": unit, "probabilities": []}
    assert prediction.probabilities is not None
    ranked = sorted(prediction.probabilities[0].items(), key=lambda item: -item[1])
    return {
        "label": label,
        "value": str(value),
        "unit": "",
        "probabilities": [(name, f"{share * 100:.1f} %") for name, share in ranked],
    }
