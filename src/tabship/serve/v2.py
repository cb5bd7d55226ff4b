"""The Open Inference Protocol (KServe/Triton "V2" REST): health, metadata and infer.

A protocol module in the sense of the serving core: it translates V2 tensors to the records
the JSON API predicts and back, through the JSON API's own prediction path, so the same
validation, limits, metrics and log line apply. Errors are TabshipError, answered in the
protocol's {"error": ...} shape by the one error mapper (the routes' `style`).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabship import __version__
from tabship.errors import (
    ConfigError,
    MalformedBodyError,
    MediaTypeError,
    NotFoundError,
    RecordError,
)
from tabship.feature import shown
from tabship.predictor import Prediction
from tabship.serve import binary_tensors
from tabship.serve.api import as_first_row
from tabship.serve.contract import body_headers, decoded_body, media_type, require_json
from tabship.serve.http import (
    API_POLICY,
    JSON,
    Answer,
    Request,
    dump_json,
    json_answer,
    written_json_answer,
)
from tabship.serve.v2_tensors import Columns, TensorReader, datatype_of, refuse_unknown_keys

if TYPE_CHECKING:
    from tabship.config import ServeSettings
    from tabship.predictor import Predictor
    from tabship.serve.api import JsonApi
    from tabship.serve.layers import ServerState

EXTENSIONS = ["binary_tensor_data"]
BINARY = "application/octet-stream"
# What an infer body may be declared as: JSON, Triton's binary form, or nothing (its client).
BODY_TYPES = frozenset({"", JSON, BINARY})


def model_name(predictor: Predictor, settings: ServeSettings) -> str:
    """The model's name in /v2/models/NAME: --model-name, else the model folder's name."""
    given = settings.option("model_name")  # the flag, or the variable that set it
    if settings.model_name is not None and not settings.model_name.strip():
        raise ConfigError(f"{given} '' names nothing; leave it out to use the folder's name")
    # The folder as the user named it: through a symlink, the link's name, not its target's.
    folder = Path.cwd() / predictor.artifact.directory
    name = settings.model_name or _segment(
        folder.name if folder.name not in ("", "..") else folder.resolve().name
    )
    if not (0 < len(name) <= 128 and name not in (".", "..") and all(map(_segment_char, name))):
        raise ConfigError(
            f"model name {name[:60]!r} cannot be a path segment; give {given} "
            "up to 128 letters, digits, '-', '_' or '.' (not '.' or '..' alone)"
        )
    return name


def _segment(folder: str) -> str:
    """A folder's name as a model name: each run of other characters as one `-` (a folder
    `my model (v1)` serves as `my-model-v1`; it was refused unless --model-name was given)."""
    name = "".join(char if _segment_char(char) else " " for char in folder)
    name = "-".join(name.split())[:128].strip(".")
    return name or "model"


def _segment_char(char: str) -> bool:
    """A character a model name may hold: a letter or digit of any script (clients send it
    percent-encoded), `-`, `_` or `.`; `?`, `#`, `%` and spaces were taken and then never
    matched a path, and `..` was resolved away by curl and browsers."""
    return char.isalnum() or char in "._-"


class V2Api:
    """The V2 handlers for one model."""

    def __init__(
        self, predictor: Predictor, settings: ServeSettings, state: ServerState, api: JsonApi
    ) -> None:
        self.predictor = predictor
        self.state = state
        self.api = api
        self.name = model_name(predictor, settings)
        # The model's digest names the one version served: a new model is a new version.
        self.version = predictor.card.sha256[:12]
        self.max_body = settings.max_body_bytes
        self.reader = TensorReader(predictor.schema, settings.max_batch, self.name, self.version)
        self.classes = list(predictor.keys)
        # The protocol's type for the labels as answers give them (a 0/1 target: INT64).
        by_label = {"integer": "INT64", "number": "FP64", "boolean": "BOOL", "string": "BYTES"}
        self.output_types = {
            "predict": "FP64"
            if predictor.task == "regression"
            else by_label[predictor.card.label_type]
        }
        if predictor.task == "classification":
            self.output_types["predict_proba"] = "FP64"
        self.metadata = json_answer(self._metadata())
        # Every output, in binary or as JSON: what a request naming no outputs gets.
        self._json_outputs = [(name, False) for name in self.output_types]
        self._binary_outputs = [(name, True) for name in self.output_types]
        # The everyday answer around its ids and row count (see `_answer`): the head is
        # {"model_name":...,"model_version":...,"parameters":{ as the encoder writes it.
        opened = {"model_name": self.name, "model_version": self.version, "parameters": {}}
        self._head = dump_json(opened)[:-2] + b'"prediction_ids":'
        self._head_plain = b"null" not in self._head
        self._output_head = b'"name":"predict","datatype":"%s","shape":[' % (
            self.output_types["predict"].encode()
        )
        self.server_metadata = json_answer(
            {"name": "tabship", "version": __version__, "extensions": EXTENSIONS}
        )

    def _metadata(self) -> dict[str, Any]:
        outputs = [{"name": "predict", "datatype": self.output_types["predict"], "shape": [-1]}]
        if "predict_proba" in self.output_types:
            outputs.append(
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(self.classes)]}
            )
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": f"tabship_{self.predictor.engine.name}",
            "inputs": [
                {"name": f.name, "datatype": datatype_of(f), "shape": [-1]}
                for f in self.predictor.schema.features
            ],
            "outputs": outputs,
        }

    def _check_model(self, request: Request) -> None:
        """404 unless the path names this model (and, if given, its version); the answer
        names what is served except on a probe (open when every other route wants a key)."""
        tell = not request.probe
        name = _segment_text(request.params.get("name", ""))
        if name != self.name:
            served = f"; this server serves {self.name!r}" if tell else ""
            raise NotFoundError(f"model {name[:100]!r} is not served here{served}")
        version = request.params.get("version")
        if version is not None:
            version = _segment_text(version)
        if version is not None and version != self.version:
            served = f"; its version is {self.version!r}" if tell else ""
            raise NotFoundError(f"model {name!r} has no version {version[:100]!r}{served}")

    async def server(self, request: Request) -> Answer:
        """Server metadata: name, version, extensions."""
        return self.server_metadata

    async def live(self, request: Request) -> Answer:
        """Liveness: the process answers."""
        return json_answer({"live": True})

    async def ready(self, request: Request) -> Answer:
        """Readiness: warmed up and not draining, else 503."""
        ready = self.state.ready and not self.state.draining
        return json_answer({"ready": ready}, 200 if ready else 503)

    async def model(self, request: Request) -> Answer:
        """Model metadata: inputs and outputs with their datatypes and shapes."""
        self._check_model(request)
        return self.metadata

    async def model_ready(self, request: Request) -> Answer:
        """The model is loaded and warmed up."""
        self._check_model(request)
        ready = self.state.ready and not self.state.draining
        return json_answer({"name": self.name, "ready": ready}, 200 if ready else 503)

    async def infer(self, request: Request) -> Answer:
        """Predict V2 tensors (JSON or binary) through the JSON API's prediction path."""
        self._check_model(request)
        if not self.api.batches(request):
            return await self.api.answer(request, self._infer)
        columns, wanted = self._read(request)
        if columns.rows != 1:
            prediction, ids = self.api.predict_columns(request, columns.columns, columns.rows)
        else:
            # One row is one record (as `validate_columns` reads it): it joins this loop
            # turn's batch with /predict_api's records, and gets the answer it would alone.
            record = {name: column[0] for name, column in columns.columns.items()}
            try:
                prediction, ids = await self.api.predict_record(request, record)
            except RecordError as exc:
                raise as_first_row(exc) from None
        return self._answer(columns, wanted, prediction, ids)

    def _infer(self, request: Request) -> Answer:
        columns, wanted = self._read(request)
        try:
            prediction, ids = self.api.predict_columns(request, columns.columns, columns.rows)
        except RecordError as exc:
            if columns.rows == 1:  # the tensors' row 0, as /v1/predict names a lone record
                raise as_first_row(exc) from None
            raise
        return self._answer(columns, wanted, prediction, ids)

    def _read(self, request: Request) -> tuple[Columns, list[tuple[str, bool]]]:
        """The request's tensors as columns, and the outputs it asks for."""
        content_type, encoding = body_headers(request.headers)
        media = media_type(content_type)
        if media not in BODY_TYPES and not media.endswith("+json"):
            raise MediaTypeError(
                f"content type {media!r} is not accepted; send application/json, or "
                "application/octet-stream with Inference-Header-Content-Length"
            )
        if media and media != BINARY:
            require_json(content_type)  # JSON in another charset: 415, as on /predict_api
        header, binary = binary_tensors.split_body(
            decoded_body(request.body, encoding, self.max_body), request.header(_HEADER_LENGTH)
        )
        columns = self.reader.read(header, binary)
        return columns, self._outputs(columns)  # outputs refused before anything is predicted

    def _answer(
        self,
        columns: Columns,
        wanted: list[tuple[str, bool]],
        prediction: Prediction,
        ids: list[str],
        shortcut: bool = True,
    ) -> Answer:
        """The inference response; outputs asked for in binary go after the JSON header.

        The rows' prediction ids (for POST /v1/feedback) are the response parameter
        `prediction_ids`, comma-separated: the protocol's parameters hold scalars only.
        """
        everyday = wanted == _PREDICT_AS_JSON and columns.id is None and not prediction.warnings
        if shortcut and everyday and self._head_plain:
            data = dump_json(prediction.values)
            # "null" anywhere has `dump_json` write the whole answer with the standard
            # library's encoder, whose bytes differ (\u escapes, 1e-07): no shortcut then.
            if b"null" not in data:
                # The bytes the rest of this method writes (a test holds them equal, shortcut
                # off), joined from a head made once: a third of a one-record answer's time.
                return written_json_answer(
                    b'%s%s},"outputs":[{%s%d],"data":%s}]}'
                    % (self._head, dump_json(",".join(ids)), self._output_head, columns.rows, data)
                )
        outputs: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for name, binary in wanted:
            values, shape = self._values(name, prediction, columns.rows)
            output: dict[str, Any] = {
                "name": name,
                "datatype": self.output_types[name],
                "shape": shape,
            }
            parameters: dict[str, Any] = {}
            if name == "predict_proba":
                parameters["classes"] = json.dumps(self.classes)
            if binary:
                blob = binary_tensors.encode(self.output_types[name], values)
                parameters["binary_data_size"] = len(blob)
                blobs.append(blob)
            else:
                output["data"] = values
            if parameters:
                output["parameters"] = parameters
            outputs.append(output)
        answer: dict[str, Any] = {"model_name": self.name, "model_version": self.version}
        if columns.id is not None:
            answer["id"] = columns.id
        answer["parameters"] = {"prediction_ids": ",".join(ids)}
        if prediction.warnings:
            # Parameter values are scalars in the protocol: one warning per line.
            answer["parameters"]["warnings"] = "\n".join(prediction.warnings)
            answer["parameters"]["warning_count"] = len(prediction.warnings)
        answer["outputs"] = outputs
        if not blobs:
            return json_answer(answer)
        head = dump_json(answer)
        return Answer(
            200,
            b"".join([head, *blobs]),
            BINARY,
            (
                ("content-security-policy", API_POLICY),
                (binary_tensors.HEADER, str(len(head))),
            ),
        )

    def _outputs(self, columns: Columns) -> list[tuple[str, bool]]:
        """The outputs to answer, each with whether it goes in binary."""
        default = _flag(columns.parameters, "binary_data_output", "parameters", False)
        if not columns.outputs:  # none asked for by name: all of them
            # A copy: the answer's loop only reads it, but a shared list would outlive one.
            return list(self._binary_outputs if default else self._json_outputs)
        wanted: list[tuple[str, bool]] = []
        for index, item in enumerate(columns.outputs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise MalformedBodyError(f"outputs[{index}]: must be an object with a name")
            refuse_unknown_keys(
                item, _OUTPUT_KEYS, f"outputs[{index}]", "a requested output (name, parameters)"
            )
            name = item["name"]
            if name not in self.output_types or any(name == seen for seen, _ in wanted):
                raise MalformedBodyError(
                    f"outputs[{index}].name: {name[:60]!r} is not an output of this model "
                    f"(or is asked twice); the outputs are {', '.join(self.output_types)}"
                )
            parameters = item.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise MalformedBodyError(f"outputs[{index}].parameters: must be an object")
            where = f"outputs[{index}].parameters"
            wanted.append((name, _flag(parameters, "binary_data", where, default)))
        return wanted

    def _values(self, name: str, prediction: Prediction, rows: int) -> tuple[list[Any], list[int]]:
        if name == "predict":
            return prediction.values, [rows]
        assert prediction.probabilities is not None
        flat = [row[label] for row in prediction.probabilities for label in self.classes]
        return flat, [rows, len(self.classes)]


def _segment_text(segment: str) -> str:
    """A path segment's text: the router leaves `%2F` and `%25` encoded (see
    `http.request_path`), so that a slash in a name is no separator."""
    return urllib.parse.unquote(segment) if "%" in segment else segment


def _flag(parameters: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    """A boolean parameter (absent: `default`); anything but true or false is refused."""
    value = parameters.get(key, default)
    if type(value) is not bool:
        raise MalformedBodyError(f"{where}.{key}: {shown(value)} is not true or false")
    return value


_OUTPUT_KEYS = frozenset({"name", "parameters"})
_HEADER_LENGTH = binary_tensors.HEADER.encode()
# What `_outputs` asks for when the request names no outputs and no binary answer.
_PREDICT_AS_JSON = [("predict", False)]
