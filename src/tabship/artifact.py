"""The model folder: write it, and open it only after every byte has been verified."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from tabship.card import FORMAT, FORMAT_VERSION, ModelCard
from tabship.errors import ArtifactError, OutputExistsError
from tabship.onnx_safety import check_self_contained

METADATA = "tabship.json"
ONNX_FILE = "model.onnx"
PIPELINE_FILE = "pipeline.skops"
REPORT_FILE = "report.html"
# The training data's sealed summary for drift (monitor/profile.py); older folders lack it.
PROFILE_FILE = "profile.json"
KNOWN_FILES = frozenset({ONNX_FILE, PIPELINE_FILE, REPORT_FILE, PROFILE_FILE})
MAX_METADATA_BYTES = 16 * 1024 * 1024
_PLACEHOLDER = "0" * 64

# Types beyond skops' own safe defaults that our candidate pipelines contain. Written here,
# never taken from get_untrusted_types(), so a swapped file cannot widen what we load.
SKOPS_ALLOWED_TYPES = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HuberLoss",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn.ensemble._gb.BinomialDeviance",
    "sklearn.ensemble._gb.MultinomialDeviance",
    "sklearn.ensemble._gb.LeastSquaresError",
    "sklearn.ensemble._gb.HuberLossFunction",
    # LightGBM and XGBoost keep their trees in a Booster that skops rebuilds from its state.
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
    "lightgbm.sklearn.LGBMClassifier",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBRegressor",
    "xgboost.sklearn.XGBClassifier",
    # The seeded folds a target encoding cross-fits with.
    "sklearn.model_selection._split.KFold",
    "sklearn.model_selection._split.StratifiedKFold",
]

# The libraries whose version decides whether a saved engine still loads.
ENGINE_LIBRARY = {"onnx": "onnxruntime", "sklearn": "scikit-learn"}
RECORDED_LIBRARIES = (
    "tabship",
    "scikit-learn",
    "onnxruntime",
    "skl2onnx",
    "onnx",
    "skops",
    "numpy",
)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def installed_version(package: str) -> str | None:
    """The installed version of `package`, or None, without importing it."""
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """Versions recorded in tabship.json at training time."""
    versions: dict[str, str | None] = {name: installed_version(name) for name in RECORDED_LIBRARIES}
    versions["python"] = platform.python_version()
    return versions


def _seal(metadata: dict[str, Any]) -> bytes:
    """tabship.json bytes carrying the sha256 of themselves (computed with a zero placeholder)."""
    body = {**metadata, "metadata_sha256": _PLACEHOLDER}
    text = json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    digest = sha256_bytes(text.encode())
    return text.replace(_seal_field(_PLACEHOLDER), _seal_field(digest), 1).encode()


def _seal_field(digest: str) -> str:
    return f'"metadata_sha256": "{digest}"'


# What a model folder may hold besides KNOWN_FILES: its seal, and the signature `tabship
# sign` adds (signing.SIGNATURE_FILE, not imported: signing pulls in the signing library).
_MODEL_EXTRAS = frozenset({METADATA, "model.sig"})


def check_output_free(directory: Path, force: bool) -> None:
    """Refuse to replace anything already at `directory` unless the user said --force, and
    even then anything but a model folder: --force replaces a model, never the user's files
    (a table given as -o, a folder of notes), which the replacement would delete."""
    if directory.exists() and not directory.is_dir():
        raise OutputExistsError(
            f"{directory} is a file, not a model folder; choose another -o (--force replaces "
            "only a model folder)"
        )
    if not directory.exists() or not any(directory.iterdir()):
        return
    if not force:
        raise OutputExistsError(
            f"{directory} already exists and is not empty; choose another -o or pass --force to replace it"
        )
    if not (directory / METADATA).is_file():
        raise OutputExistsError(
            f"{directory} is not a model folder (no {METADATA}); choose another -o (--force "
            "replaces only a model folder)"
        )
    strangers = sorted(
        entry.name
        for entry in directory.iterdir()
        if entry.name not in KNOWN_FILES | _MODEL_EXTRAS or not entry.is_file()
    )
    if strangers:
        shown = ", ".join(repr(name) for name in strangers[:3])
        more = f" and {len(strangers) - 3} more" if len(strangers) > 3 else ""
        raise OutputExistsError(
            f"{directory} holds files a model folder does not ({shown}{more}); --force would "
            "delete them: move them out or choose another -o"
        )


def write_artifact(
    directory: Path, metadata: dict[str, Any], files: dict[str, bytes], force: bool = False
) -> Path:
    """Write the model folder atomically; refuse to replace an existing one unless `force`."""
    check_output_free(directory, force)
    unknown = set(files) - KNOWN_FILES
    if unknown:
        raise ArtifactError(f"cannot write unknown artifact files: {', '.join(sorted(unknown))}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        sealed = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **metadata,
            "versions": library_versions(),
            "files": {name: sha256_bytes(data) for name, data in sorted(files.items())},
        }
        (staging / METADATA).write_bytes(_seal(sealed))
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            directory.replace(retired / directory.name)
            staging.replace(directory)
            shutil.rmtree(retired)
        else:
            staging.replace(directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory


def _read_regular(path: Path, limit: int | None = None) -> bytes:
    """Bytes of a regular file inside the model folder; refuses symlinks and missing files."""
    if path.is_symlink():
        raise ArtifactError(f"{path} is a symbolic link; a model folder holds only regular files")
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the model folder is incomplete, train it again")
    if limit is not None and path.stat().st_size > limit:
        raise ArtifactError(
            f"{path} is larger than {limit} bytes; it is not a tabship metadata file"
        )
    return path.read_bytes()


def _check_name(directory: Path, name: str) -> Path:
    if name not in KNOWN_FILES or Path(name).name != name:
        raise ArtifactError(
            f"{directory / METADATA} lists the file {name!r}; only {', '.join(sorted(KNOWN_FILES))} "
            "are allowed (no paths, no '..')"
        )
    return directory / name


def _version_key(version: str | None) -> tuple[str, ...]:
    return tuple((version or "").split(".")[:2])


@dataclass(frozen=True)
class Artifact:
    """An opened, verified model folder."""

    directory: Path
    card: ModelCard

    @property
    def sha256(self) -> str:
        """The model's identity: the digest sealed into tabship.json (it covers every file)."""
        return self.card.sha256

    @classmethod
    def open(cls, directory: Path | str) -> Artifact:
        """Verify tabship.json and every file it lists before anything is deserialised."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ArtifactError(
                f"{directory} is not a model folder; train one with `tabship train DATA --target COL -o {directory}`"
            )
        meta_path = directory / METADATA
        raw = _read_regular(meta_path, MAX_METADATA_BYTES)
        try:
            metadata = json.loads(raw)
            claimed = str(metadata["metadata_sha256"])
        except (ValueError, KeyError, TypeError):
            raise ArtifactError(
                f"{meta_path} is not a tabship metadata file (unreadable JSON or no checksum)"
            ) from None
        unsealed = raw.replace(_seal_field(claimed).encode(), _seal_field(_PLACEHOLDER).encode(), 1)
        actual = sha256_bytes(unsealed)
        if actual != claimed:
            raise ArtifactError(
                f"{meta_path} was modified: sha256 expected {claimed}, actual {actual}"
            )
        artifact = cls(directory, ModelCard.from_json(metadata, str(meta_path)))
        for name in artifact.card.files:
            artifact.read(name)
        engine = artifact.card.engine
        needed = ONNX_FILE if engine == "onnx" else PIPELINE_FILE
        if needed not in artifact.card.files:
            raise ArtifactError(
                f"{meta_path} says the {engine} engine serves, but lists no {needed}"
            )
        return artifact

    def read(self, name: str) -> bytes:
        """A listed file's bytes, verified against tabship.json on the very bytes returned."""
        expected = self.card.files.get(name)
        path = _check_name(self.directory, name)
        if expected is None:
            raise ArtifactError(
                f"{path} is not listed in {METADATA}; the folder is not what training wrote"
            )
        data = _read_regular(path)
        actual = sha256_bytes(data)
        if actual != expected:
            raise ArtifactError(f"{path} was modified: sha256 expected {expected}, actual {actual}")
        return data

    def check_versions(self, engine: str) -> None:
        """Refuse an engine whose library version differs from training in major.minor."""
        package = ENGINE_LIBRARY[engine]
        trained = self.card.versions.get(package)
        here = installed_version(package)
        if here is None:
            raise ArtifactError(
                f"the {engine} engine needs {package}=={trained}, which is not installed"
            )
        if _version_key(trained) != _version_key(here):
            raise ArtifactError(
                f"{self.directory} was trained with {package} {trained}, this environment has "
                f"{here}: install {package}=={trained} or retrain with `tabship train`"
            )

    def load_onnx(self) -> bytes:
        """The verified ONNX graph."""
        self.check_versions("onnx")
        model = self.read(ONNX_FILE)
        check_self_contained(model, str(self.directory / ONNX_FILE))
        return model

    def load_pipeline(self) -> Any:
        """The fitted scikit-learn pipeline, loaded by skops with our fixed allowlist."""
        self.check_versions("sklearn")
        data = self.read(PIPELINE_FILE)
        import skops.io

        try:
            return skops.io.loads(data, trusted=SKOPS_ALLOWED_TYPES)
        except Exception as exc:
            raise ArtifactError(
                f"{self.directory / PIPELINE_FILE} cannot be loaded safely: {exc}"
            ) from None
