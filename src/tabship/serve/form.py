"""The web form: fields generated from the schema, submitted values parsed back to records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from tabship.card import ModelCard
from tabship.errors import MalformedBodyError, MediaTypeError, Problem, RecordError
from tabship.feature import EMPTY
from tabship.predictor import Prediction, Predictor
from tabship.schema import Feature
from tabship.serve.charts import amount
from tabship.serve.contract import body_headers, decoded_body, media_type, require_utf8
from tabship.serve.http import Answer, Request, html_answer
from tabship.serve.pages import render
from tabship.serve.prometheus import Metrics
from tabship.serve.routes import FEEDBACK_PATH, MONITOR_PATH

if TYPE_CHECKING:
    from tabship.serve.explain import ExplainApi

MEDIA_TYPE = "application/x-www-form-urlencoded"
# A form of more fields than this is no form of ours (parse_qsl's own refusal read as Python).
MAX_FORM_FIELDS = 1000
# A category with more levels than this is a text input with suggestions, not a select.
SELECT_MAX_OPTIONS = 40


def readable(name: str) -> str:
    """A column name as a person reads it: 'bmi' -> 'Bmi', 'num_children' -> 'Num children'."""
    text = name.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:] if text else name


def page_title(card: ModelCard) -> str:
    """What the pages call the prediction: the label given at training, else the column."""
    return card.target_label or readable(card.target)


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
    # The HTML input type of a date field (date, or datetime-local when times were seen),
    # and "text" for a category of many levels (suggested from a datalist).
    input_type: str = ""
    options: list[str] = field(default_factory=list)
    required: bool = True
    hint: str = ""


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def distinct_labels(names: list[str]) -> dict[str, str]:
    """Each column's label: its readable form ("bmi" -> "Bmi"), or the name as written when
    two columns would read alike, case aside ("Age", "age " and "AGE_")."""
    readable_of = {name: readable(name) for name in names}
    counts: dict[str, int] = {}
    for label in readable_of.values():
        counts[label.casefold()] = counts.get(label.casefold(), 0) + 1
    return {
        name: label if counts[label.casefold()] == 1 else name
        for name, label in readable_of.items()
    }


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
    labels = distinct_labels([feature.name for feature in predictor.schema.features])
    for feature in predictor.schema.features:
        item = Field(
            name=feature.name,
            label=labels[feature.name],
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
        elif feature.kind == "date":
            item.minimum = feature.date_text(feature.minimum)
            item.maximum = feature.date_text(feature.maximum)
            item.input_type = "datetime-local" if feature.dtype == "datetime" else "date"
            item.hint = f"seen in training: {item.minimum} to {item.maximum}"
        else:
            item.options = list(feature.known_levels)
            if len(item.options) > SELECT_MAX_OPTIONS and not predictor.strict_categories:
                # A list of hundreds of options is scrolled, not read: a text input suggests
                # the levels as one types, and takes a new value as the API does.
                item.input_type = "text"
                item.hint = (
                    f"{len(item.options):,} values seen in training: type to find one; "
                    "another is predicted as unknown"
                )
        out.append(item)
    return out


def parse_form(
    body: bytes, content_type: str | None, features: tuple[Feature, ...]
) -> tuple[dict[str, str], dict[str, Any], list[Problem]]:
    """Submitted text, the typed record, and the problems the features found in the text."""
    sent, repeated = _fields(_form_text(body, content_type))
    submitted = {feature.name: sent.get(_one_break(feature.name), "") for feature in features}
    record: dict[str, Any] = {}
    problems: list[Problem] = []
    for feature in features:
        if _one_break(feature.name) in repeated:
            problems.append(Problem(feature.name, "is given twice in the form; give it once"))
            record[feature.name] = None
            continue
        text = submitted[feature.name]
        # The form's text is typed here; the predictor then applies the same feature rules.
        value, problem, _ = feature.read_text(text)
        if text == "" and not feature.allow_missing:
            # A person is there to fill it in: the gap filling the API and files get
            # (`Feature.fills_gaps`) would only hide a forgotten field.
            problem = EMPTY
        if problem is not None:
            problems.append(Problem(feature.name, problem))
        record[feature.name] = (
            None if text == "" else (text if feature.kind != "numeric" else _typed(value))
        )
    return submitted, record, problems


def _form_text(body: bytes, content_type: str | None) -> str:
    """The body of a form submitted as UTF-8 (415 for another type or charset, 422 for bytes
    that are not UTF-8 or too many fields)."""
    media = media_type(content_type)
    if media != MEDIA_TYPE:
        raise MediaTypeError(
            f"content type {media or 'none'!r} is not accepted; submit the form as {MEDIA_TYPE}"
        )
    require_utf8(content_type, "submit the form as UTF-8")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(
            f"body: not UTF-8 text at byte {exc.start}; submit the form as UTF-8"
        ) from None
    if text.count("&") >= MAX_FORM_FIELDS:
        raise MalformedBodyError(f"body: more than {MAX_FORM_FIELDS:,} fields in the form")
    return text


def _fields(text: str) -> tuple[dict[str, str], set[str]]:
    """Each field's value, and the names given more than once (which value was meant is
    unknown: said beside the field). Browsers send every line break in a field's name as CRLF
    (HTML's form encoding), so a column named with a newline is found by its name with line
    breaks made alike."""
    sent: dict[str, str] = {}
    repeated: set[str] = set()
    for key, value in parse_qsl(text, keep_blank_values=True, strict_parsing=False):
        if _one_break(key) in sent:
            repeated.add(_one_break(key))
        sent[_one_break(key)] = value.strip()
    return sent, repeated


def _one_break(name: str) -> str:
    return name.replace("\r\n", "\n").replace("\r", "\n")


def _typed(value: float) -> int | float:
    return int(value) if value.is_integer() else value


class FormPage:
    """GET / draws the form; POST /predict answers it with the prediction and its warnings."""

    def __init__(
        self,
        predictor: Predictor,
        metrics: Metrics,
        report: bool,
        explain: ExplainApi | None = None,
        max_body: int = 1024 * 1024,
        logged: bool = False,
    ) -> None:
        self.predictor = predictor
        self.max_body = max_body
        # With a prediction log the page invites feedback and links /monitor; without one
        # both answer 404, so neither is offered.
        self.logged = logged
        self.metrics = metrics
        self.report = report
        # After Predict the page shows why (contributions) and what if (one chart per feature).
        self.explain = explain

    async def page(self, request: Request) -> Answer:
        """The empty form."""
        return html_answer(
            render_page(
                self.predictor, fields_for(self.predictor), report=self.report, logged=self.logged
            )
        )

    async def submit(self, request: Request) -> Answer:
        """The form again, with the prediction or each problem beside its field."""
        features = self.predictor.schema.features
        content_type, encoding = body_headers(request.headers)
        body = decoded_body(request.body, encoding, self.max_body)
        submitted, record, problems = parse_form(body, content_type, features)
        prediction = None
        insight = None
        ids: list[str] = []
        if not problems:
            try:
                prediction = self.predictor.predict([record])
            except RecordError as exc:
                problems = exc.problems
            else:
                ids = request.predicted([record], prediction)
                self.metrics.count_prediction(1, prediction.unseen)
                if self.explain is not None:
                    from tabship.serve.insight import form_insight

                    insight = await form_insight(self.explain, record)
        fields = fields_for(self.predictor, submitted, problems)
        html = render_page(
            self.predictor,
            fields,
            prediction,
            report=self.report,
            insight=insight,
            prediction_id=ids[0] if ids else "",
            logged=self.logged,
        )
        return html_answer(html, status=422 if problems else 200)


def render_page(
    predictor: Predictor,
    fields: list[Field],
    prediction: Prediction | None = None,
    report: bool = False,
    insight: dict[str, Any] | None = None,
    prediction_id: str = "",
    logged: bool = False,
) -> str:
    """The whole HTML page: form, and the prediction with its warnings when there is one."""
    card = predictor.card
    result = None
    if prediction is not None:
        result = _describe(predictor, prediction)
    return render(
        "index.html",
        title=page_title(card),
        fields=fields,
        result=result,
        warnings=prediction.warnings if prediction else [],
        model_label=card.model.label,
        engine=predictor.engine.name,
        cv_mean=card.model.cv.mean.get(card.sort_by),
        sort_by=card.sort_by,
        report=report,
        insight=insight,
        prediction_id=prediction_id,
        logged=logged,
        # The route table's paths (added with a prediction log), not copies of them.
        monitor_path=MONITOR_PATH,
        feedback_path=FEEDBACK_PATH,
    )


def _describe(predictor: Predictor, prediction: Prediction) -> dict[str, Any]:
    card = predictor.card
    label = page_title(card)
    value = prediction.values[0]
    if predictor.task == "regression":
        shown = amount(value, probability=False)
        return {"label": label, "value": shown, "unit": card.unit, "probabilities": []}
    assert prediction.probabilities is not None
    ranked = sorted(prediction.probabilities[0].items(), key=lambda item: -item[1])
    return {
        "label": label,
        "value": predictor.keys[predictor.labels.index(value)],  # `true`, as answers key it
        "unit": "",
        "probabilities": [(name, f"{share * 100:.1f} %") for name, share in ranked],
    }
