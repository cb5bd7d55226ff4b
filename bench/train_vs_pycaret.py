"""tabship's training against PyCaret 3.3.2, each in its own virtual environment.

1. Accuracy: a seeded 70/30 split of insurance; `tabship train` (defaults) and PyCaret's
   setup + compare_models (defaults) both learn from the same 70 % and are scored on the 30 %.
2. Wall time: a default `tabship train` on the whole table (the CLI process, imports and
   report included) against PyCaret's setup + compare_models on the same table, in this run.
3. Tuning budget: `tabship train --tune --time-budget B` and how long the search took.

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

# Runs inside PyCaret's environment: train on one CSV, time setup + compare, predict another.
PYCARET_SCRIPT = """
import json, sys, time
import pandas as pd
from pycaret.regression import compare_models, predict_model, pull, setup
train = pd.read_csv(sys.argv[1])
test = pd.read_csv(sys.argv[2]) if sys.argv[2] != "-" else None
started = time.perf_counter()
setup(train, target=sys.argv[3], session_id=int(sys.argv[4]), verbose=False, index=False,
      **({"test_data": test} if test is not None else {}))
best = compare_models(verbose=False)
seconds = time.perf_counter() - started
board = pull()
out = {"seconds": seconds, "winner": board.index[0], "winner_name": str(board.iloc[0]["Model"]),
       "cv": {"r2": float(board.iloc[0]["R2"]), "mae": float(board.iloc[0]["MAE"])}}
if test is not None:
    out["predictions"] = predict_model(best, data=test.drop(columns=[sys.argv[3]]))["prediction_label"].tolist()
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


def run_pycaret(train: Path, test: Path | None, target: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [
            str(pycaret_python()),
            "-c",
            PYCARET_SCRIPT,
            str(train),
            str(test or "-"),
            target,
            str(SEED),
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


def scores(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    error = actual - predicted
    return {
        "r2": float(1 - np.sum(error**2) / np.sum((actual - actual.mean()) ** 2)),
        "mae": float(np.mean(np.abs(error))),
    }


def main() -> None:
    dataset = BUILTIN["insurance"]
    target = dataset.target
    frame = pd.read_csv(fetch(dataset.name))
    work = Path(tempfile.mkdtemp(prefix="tabship-vs-pycaret-"))
    train, test = train_test_split(frame, test_size=0.3, random_state=SEED)
    train.to_csv(work / "train.csv", index=False)
    test.to_csv(work / "test.csv", index=False)
    actual = test[target].to_numpy(dtype=np.float64)

    print("accuracy: both learn from the same 70 %, scored on the 30 %", flush=True)
    _, meta = run_tabship(work / "train.csv", target, work / "tabship-70")
    ours = Predictor.load(work / "tabship-70").predict(
        test.drop(columns=[target]).to_dict(orient="records")
    )
    theirs = run_pycaret(work / "train.csv", work / "test.csv", target)
    accuracy = {
        "tabship": {"model": meta["model"]["label"], **scores(actual, np.asarray(ours.values))},
        "pycaret": {
            "model": theirs["winner_name"],
            **scores(actual, np.asarray(theirs["predictions"])),
        },
    }

    print("wall time: default training on the whole table", flush=True)
    frame.to_csv(work / "insurance.csv", index=False)
    tabship_seconds, full = run_tabship(work / "insurance.csv", target, work / "tabship-full")
    pycaret_full = run_pycaret(work / "insurance.csv", None, target)

    print(f"tuning: --tune --time-budget {TUNE_BUDGET:g}", flush=True)
    tune_seconds, tuned = run_tabship(
        work / "insurance.csv",
        target,
        work / "tabship-tuned",
        "--tune",
        "--time-budget",
        str(TUNE_BUDGET),
    )
    results = {
        "cores": os.cpu_count(),
        "split": {"seed": SEED, "train_rows": len(train), "test_rows": len(test)},
        "accuracy_on_30_percent": accuracy,
        "wall_seconds": {
            "tabship_train_cli": tabship_seconds,
            "pycaret_setup_compare_models": pycaret_full["seconds"],
            "ratio": tabship_seconds / pycaret_full["seconds"],
        },
        "cv_on_whole_table": {
            "tabship": {"model": full["model"]["label"], **full["model"]["cv"]["mean"]},
            "pycaret": {"model": pycaret_full["winner_name"], **pycaret_full["cv"]},
        },
        "tuning": {
            "budget": TUNE_BUDGET,
            "search_seconds": tuned["tuning"]["seconds"],
            "over_budget_percent": 100 * (tuned["tuning"]["seconds"] / TUNE_BUDGET - 1),
            "trials": tuned["tuning"]["trials"],
            "cli_seconds": tune_seconds,
            "chosen": tuned["model"]["label"],
            "cv": tuned["model"]["cv"]["mean"],
        },
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    a, w = accuracy, results["wall_seconds"]
    print(f"\n## tabship vs PyCaret 3.3.2 on insurance ({os.cpu_count()} cores)\n")
    print("| | model | R2 on 30 % | MAE on 30 % |")
    print("|---|---|---:|---:|")
    for name in ("tabship", "pycaret"):
        print(f"| {name} | {a[name]['model']} | {a[name]['r2']:.4f} | {a[name]['mae']:,.0f} |")
    gain = a["tabship"]["r2"] - a["pycaret"]["r2"]
    cut = 1 - a["tabship"]["mae"] / a["pycaret"]["mae"]
    print(f"\nR2 higher by {gain:+.4f} (bar +0.005); MAE lower by {cut:.1%} (bar 20 %)")
    print(
        f"wall time on the whole table: tabship train {w['tabship_train_cli']:.1f} s, "
        f"PyCaret setup + compare_models {w['pycaret_setup_compare_models']:.1f} s "
        f"(ratio {w['ratio']:.2f})"
    )
    t = results["tuning"]
    print(
        f"--tune --time-budget {TUNE_BUDGET:g}: search took {t['search_seconds']:.1f} s "
        f"({t['over_budget_percent']:+.1f} %), trials {t['trials']}, chose {t['chosen']} "
        f"(CV R2 {t['cv']['r2']:.4f}, MAE {t['cv']['mae']:,.0f})"
    )
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
