"""The model card: tabship.json read once into a typed, frozen, versioned object.

Every reader takes attributes from `ModelCard`; nobody indexes the JSON. A card written by a
newer minor format may carry keys this version does not know: they are ignored. A newer major
format is refused, naming the tabship version that wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tabship.background import Background
from tabship.classes import LABEL_TYPES
from tabship.errors import ArtifactError
from tabship.schema import Schema

FORMAT = "tabship-model"
# Major: readers must understand every key. Minor: keys were only added.
FORMAT_MAJOR = 1
FORMAT_MINOR = 2  # 1.2: the `explanation` entry
FORMAT_VERSION = f"{FORMAT_MAJOR}.{FORMAT_MINOR}"


def parse_format_version(value: object) -> tuple[int, int]:
    """(major, minor) of a card's format_version; round one wrote the bare integer 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, 0
    if isinstance(value, str):
        major, _, minor = value.partition(".")
        if major.isdigit() and (minor == "" or minor.isdigit()):
            return int(major), int(minor or 0)
    raise ValueError(f"format_version {value!r} is not MAJOR.MINOR")


@dataclass(frozen=True)
class CrossValidation:
    """How the chosen model was scored: folds, seed, mean and spread of each metric."""

    folds: int
    seed: int
    mean: Mapping[str, float | None]
    std: Mapping[str, float | None]


@dataclass(frozen=True)
class ChosenModel:
    """The pipeline that won and was refit on every training row."""

    name: str
    label: str
    params: Mapping[str, Any]
    cv: CrossValidation
    holdout: Mapping[str, Any] | None


@dataclass(frozen=True)
class OnnxExport:
    """Whether model.onnx matched scikit-learn on the training rows, and why not if it did not."""

    passed: bool
    reason: str | None
    max_abs_diff: float | None
    tolerance: float | None


@dataclass(frozen=True)
class TrainingData:
    """What the model was trained on: the file's name and digest, rows, warnings."""

    source: str
    sha256: str
    rows: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class ModelCard:
    """Everything tabship.json says, typed; `document` is the JSON as read, for /v1/model."""

    format_version: tuple[int, int]
    written_by: str | None
    created: str
    task: str
    target: str
    target_label: str
    unit: str
    classes: tuple[str, ...]
    # How a class is answered in JSON: "integer", "number", "boolean" or "string".
    label_type: str
    schema: Schema
    model: ChosenModel
    engine: str
    onnx: OnnxExport
    sort_by: str
    training: TrainingData
    versions: Mapping[str, str | None]
    files: Mapping[str, str]
    sha256: str
    document: Mapping[str, Any]
    # The explanations' baseline and what-if ranges; None in folders trained before them.
    explanation: Background | None = None
    # The training CSV's decimal mark and thousands separator (a German file's "," and ".").
    number_marks: tuple[str, str | None] = (".", None)

    @property
    def title(self) -> str:
        """What pages call the target: the label given at training, else the column name."""
        return self.target_label or self.target

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "tabship.json") -> ModelCard:
        """Type a sealed tabship.json; ArtifactError names the file and the key that is wrong."""
        if data.get("format") != FORMAT:
            raise ArtifactError(
                f"{where} is not a tabship model card (format {data.get('format')!r})"
            )
        try:
            version = parse_format_version(data.get("format_version"))
        except ValueError as exc:
            raise ArtifactError(f"{where}: {exc}") from None
        if version[0] != FORMAT_MAJOR:
            writer = (
                data.get("versions", {}).get("tabship")
                if isinstance(data.get("versions"), dict)
                else None
            )
            made = f" by tabship {writer}" if writer else ""
            newer = version[0] > FORMAT_MAJOR
            advice = (
                f"install tabship {writer} or later to read it"
                if newer and writer
                else "install a newer tabship to read it"
                if newer
                else "retrain it with this tabship"
            )
            raise ArtifactError(
                f"{where} was written{made} in model format {version[0]}.{version[1]}; this tabship "
                f"reads format {FORMAT_MAJOR}.x: {advice}"
            )
        try:
            return cls._typed(data, version)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where} is missing or has a malformed entry: {exc}") from None

    @classmethod
    def _typed(cls, data: Mapping[str, Any], version: tuple[int, int]) -> ModelCard:
        model, onnx, training = data["model"], data["onnx"], data["training"]
        cv = model["cv"]
        versions = data.get("versions") or {}
        # A record may carry the training table's other columns: the target, ignored ones.
        ignored = {str(name) for name in data.get("ignored_columns") or ()} | {str(data["target"])}
        schema = Schema(Schema.from_dict(data["schema"]).features, frozenset(ignored))
        explained = data.get("explanation")
        return cls(
            format_version=version,
            written_by=versions.get("tabship"),
            created=str(data["created"]),
            task=_one_of(data["task"], ("regression", "classification"), "task"),
            target=str(data["target"]),
            target_label=str(data.get("target_label") or ""),
            unit=str(data.get("unit") or ""),
            classes=tuple(str(c) for c in data.get("classes") or ()),
            # Folders trained before typed labels answered every class as a string.
            label_type=_one_of(
                data.get("label_type") or "string",
                LABEL_TYPES,
                "label_type",
            ),
            schema=schema,
            model=ChosenModel(
                name=str(model["name"]),
                label=str(model["label"]),
                params=dict(model.get("params") or {}),
                cv=CrossValidation(
                    folds=int(cv["folds"]),
                    seed=int(cv["seed"]),
                    mean=dict(cv["mean"]),
                    std=dict(cv["std"]),
                ),
                holdout=model.get("holdout"),
            ),
            engine=_one_of(data["engine"], ("onnx", "sklearn"), "engine"),
            onnx=OnnxExport(
                passed=bool(onnx["passed"]),
                reason=onnx.get("reason"),
                max_abs_diff=onnx.get("max_abs_diff"),
                tolerance=onnx.get("tolerance"),
            ),
            sort_by=str(data.get("sort_by") or ""),
            training=TrainingData(
                source=str(training["source"]),
                sha256=str(training["sha256"]),
                rows=int(training["rows"]),
                warnings=tuple(str(w) for w in training.get("warnings") or ()),
            ),
            versions=dict(versions),
            files={str(k): str(v) for k, v in (data.get("files") or {}).items()},
            sha256=str(data["metadata_sha256"]),
            document=data,
            explanation=Background.from_dict(explained, schema) if explained else None,
            number_marks=_marks(data.get("csv_number_marks")),
        )


def _one_of(value: object, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ValueError(f"{key} is {value!r}; expected one of {', '.join(allowed)}")
    return str(value)


def _marks(given: Any) -> tuple[str, str | None]:
    """The card's decimal mark and thousands separator; the dot alone when absent (folders
    trained before, Parquet tables) or not one of the marks a CSV is read with."""
    if isinstance(given, list) and len(given) == 2 and given[0] in (".", ","):
        thousands = given[1] if given[1] in (".", None) else None
        return str(given[0]), thousands
    return ".", None
