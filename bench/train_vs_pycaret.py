"""tabship's training against PyCaret 3.3.2 on three tables, each library in its own environment.

For every table (insurance; a generated 50,000-row regression table with categorical columns;
scikit-learn's bundled breast-cancer table as classification) both learn from the same seeded
70 % and are scored on the other 30 %: `tabship train` with its defaults (the CLI process,
imports and report included) against PyCaret's setup + compare_models with its defaults.
Holdout scores and wall times are reported side by side; then `tabship train --tune
--time-budget B` on insurance shows how long the search took.

PyCaret pins scikit-learn 1.4, so it lives in .bench/pycaret (created on first run from
bench/pycaret-requirements.txt) and runs as a child process. Writes bench/training.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from tabship.datasets import BUILTIN, fetch
from tabship.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
PYCARET_VENV = ROOT / ".bench" / "pycaret"
REQUIREMENTS = ROOT / "bench" / "pycaret-requirements.txt"
RESULTS = ROOT / "bench" / "training.json"
TABSHIP = str(Path(sys.executable).with_name("tabship"))
SEED = 123
TUNE_BUDGET = float(os.environ.get("TUNE_BUDGET", "60"))
LARGE_ROWS = int(os.environ.get("LARGE_ROWS", "50000"))

# Runs inside PyCaret's environment: train on one CSV, time setup + compare, predict another.
PYCARET_SCRIPT = """
import importlib, json, sys, time
import pandas as pd
task = sys.argv[5]
module = importlib.import_module("pycaret." + task)
train = pd.read_csv(sys.argv[1])
test = pd.read_csv(sys.argv[2])
started = time.perf_counter()
module.setup(train, target=sys.argv[3], session_id=int(sys.argv[4]), verbose=False,
             index=False, test_data=test)
best = module.compare_models(verbose=False)
seconds = time.perf_counter() - started
board = module.pull()
predicted = module.predict_model(best, data=test.drop(columns=[sys.argv[3]]))
out = {"seconds": seconds, "winner_name": str(board.iloc[0]["Model"]),
       "predictions": [str(v) if task == "classification" else float(v)
                       for v in predicted["prediction_label"]]}
print("RESULT " + json.dumps(out))
"""


def pycaret_python() -> Path:
    """PyCaret's interpreter, installing it into its own environment on first use."""
    python = PYCARET_VENV / "bin" / "python"
    probe = [str(python), "-c", "import pycaret, sys; sys.exit(pycaret.__version__ != '3.3.2')"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print("installing PyCaret 3.3.2 into .bench/pycaret (once; about 3 minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PYCARET_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--retries", "5"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    subprocess.run(probe, check=True)
    return python


def run_pycaret(train: Path, test: Path, target: str, task: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [
            str(pycaret_python()),
            "-c",
            PYCARET_SCRIPT,
            str(train),
            str(test),
            target,
            str(SEED),
            task,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=train.parent,  # PyCaret writes logs.log into its working directory
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def run_tabship(table: Path, target: str, output: Path, *extra: str) -> tuple[float, dict]:  # type: ignore[type-arg]
    started = time.perf_counter()
    subprocess.run(
        [TABSHIP, "train", str(table), "--target", target, "-o", str(output), *extra],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    return seconds, json.loads((output / "tabship.json").read_text())


def regression_scores(actual: pd.Series, predicted: list[object]) -> dict[str, float]:
    truth = actual.to_numpy(dtype=np.float64)
    error = truth - np.asarray(predicted, dtype=np.float64)
    return {
        "r2": float(1 - np.sum(error**2) / np.sum((truth - truth.mean()) ** 2)),
        "mae": float(np.mean(np.abs(error))),
    }


def classification_scores(actual: pd.Series, predicted: list[object]) -> dict[str, float]:
    truth = actual.astype(str).to_numpy()
    guess = np.asarray([str(v) for v in predicted])
    return {"accuracy": float(np.mean(truth == guess))}


@dataclass(frozen=True)
class Table:
    """A benchmark table: how to build it, its target, its task and its headline metric."""

    name: str
    build: Callable[[], pd.DataFrame]
    target: str
    task: str
    metric: str
    higher_is_better: bool


def insurance() -> pd.DataFrame:
    return pd.read_csv(fetch(BUILTIN["insurance"].name))


def generated_regression(rows: int = LARGE_ROWS, seed: int = SEED) -> pd.DataFrame:
    """Prices from numbers, a few-valued kind, a 40-valued place and a 400-valued code."""
    rng = np.random.default_rng(seed)
    size = rng.gamma(4.0, 25.0, rows)
    age = rng.integers(0, 80, rows)
    distance = rng.exponential(8.0, rows)
    kind = rng.choice(
        ["flat", "house", "studio", "loft", "villa"], rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]
    )
    place_index = rng.integers(0, 40, rows)
    place_effect = rng.normal(0, 300, 40)
    code_index = rng.zipf(1.3, rows) % 400
    code_effect = rng.normal(0, 150, 400)
    kind_factor = (
        pd.Series(kind)
        .map({"flat": 1.0, "house": 1.3, "studio": 0.8, "loft": 1.2, "villa": 2.0})
        .to_numpy()
    )
    price = (
        kind_factor * (20.0 * size - 0.02 * size**2)
        - 8.0 * age * (age > 30)
        - 60.0 * np.log1p(distance)
        + place_effect[place_index]
        + code_effect[code_index]
        + rng.normal(0, 150, rows)
    )
    return pd.DataFrame(
        {
            "size": np.round(size, 1),
            "age": age,
            "distance": np.round(distance, 2),
            "kind": kind,
            "place": [f"P{i:02d}" for i in place_index],
            "code": [f"C{i:03d}" for i in code_index],
            "price": np.round(price, 2),
        }
    )


def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["diagnosis"] = np.where(frame.pop("target") == 1, "benign", "malignant")
    return frame


TABLES = [
    Table("insurance", insurance, "charges", "regression", "r2", True),
    Table(
        f"generated {LARGE_ROWS:,} rows", generated_regression, "price", "regression", "r2", True
    ),
    Table("breast cancer", breast_cancer, "diagnosis", "classification", "accuracy", True),
]


def compare_on(table: Table, work: Path) -> dict:  # type: ignore[type-arg]
    """Both libraries on the same seeded 70/30 split: holdout scores and wall times."""
    frame = table.build()
    folder = work / table.name.replace(" ", "-").replace(",", "")
    folder.mkdir()
    train, test = train_test_split(
        frame,
        test_size=0.3,
        random_state=SEED,
        stratify=frame[table.target] if table.task == "classification" else None,
    )
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    score = regression_scores if table.task == "regression" else classification_scores
    print(f"{table.name}: tabship", flush=True)
    ours_seconds, meta = run_tabship(folder / "train.csv", table.target, folder / "tabship")
    ours = Predictor.load(folder / "tabship").predict(
        test.drop(columns=[table.target]).to_dict(orient="records")
    )
    print(f"{table.name}: PyCaret", flush=True)
    theirs = run_pycaret(folder / "train.csv", folder / "test.csv", table.target, table.task)
    return {
        "rows": len(frame),
        "train_rows": len(train),
        "test_rows": len(test),
        "task": table.task,
        "metric": table.metric,
        "tabship": {
            "model": meta["model"]["label"],
            "engine": meta["engine"],
            "seconds": ours_seconds,
            **score(test[table.target], list(ours.values)),
        },
        "pycaret": {
            "model": theirs["winner_name"],
            "seconds": theirs["seconds"],
            **score(test[table.target], theirs["predictions"]),
        },
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tabship-vs-pycaret-"))
    pycaret_python()
    tables = {table.name: compare_on(table, work) for table in TABLES}

    print(f"tuning: --tune --time-budget {TUNE_BUDGET:g} on insurance", flush=True)
    insurance().to_csv(work / "insurance.csv", index=False)
    tune_seconds, tuned = run_tabship(
        work / "insurance.csv",
        "charges",
        work / "tabship-tuned",
        "--tune",
        "--time-budget",
        str(TUNE_BUDGET),
    )
    results = {
        "cores": os.cpu_count(),
        "split": {"seed": SEED, "test_share": 0.3},
        "tables": tables,
        "tuning": {
            "budget": TUNE_BUDGET,
            "search_seconds": tuned["tuning"]["seconds"] if tuned["tuning"] else None,
            "trials": tuned["tuning"]["trials"] if tuned["tuning"] else None,
            "cli_seconds": tune_seconds,
            "chosen": tuned["model"]["label"],
            "cv": tuned["model"]["cv"]["mean"],
        },
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n## tabship vs PyCaret 3.3.2 ({os.cpu_count()} cores, 30 % holdout, seed {SEED})\n")
    print(
        "| table | metric | tabship | PyCaret | tabship s | PyCaret s | tabship model | PyCaret model |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|")
    for name, row in tables.items():
        ours, theirs, metric = row["tabship"], row["pycaret"], row["metric"]
        print(
            f"| {name} | {metric} | {ours[metric]:.4f} | {theirs[metric]:.4f} | "
            f"{ours['seconds']:.1f} | {theirs['seconds']:.1f} | {ours['model']} | {theirs['model']} |"
        )
    t = results["tuning"]
    print(
        f"\n--tune --time-budget {TUNE_BUDGET:g} on insurance: the whole CLI run took "
        f"{t['cli_seconds']:.1f} s, trials {t['trials']}, chose {t['chosen']} "
        f"(CV R2 {t['cv']['r2']:.4f}, MAE {t['cv']['mae']:,.0f})"
    )
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
