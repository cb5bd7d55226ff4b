"""The real console script, run as a user would; errors are one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tabship.workflow import TrainedModel

from .conftest import make_tiny_table
from .servers import TABSHIP


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [TABSHIP, *args], capture_output=True, text=True, cwd=cwd, env=environ, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and expected in result.stderr


def test_help_lists_commands_without_loading_ml_libraries() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("train", "predict", "datasets", "demo"):
        assert command in result.stdout
    probe = "import sys, tabship.cli; print(sorted(m for m in ('sklearn', 'pandas', 'onnxruntime') if m in sys.modules))"
    assert (
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "[]"
    )


def test_datasets_list_and_fetch() -> None:
    assert "insurance\ttarget=charges" in run("datasets", "list").stdout
    fetched = run("datasets", "fetch", "insurance")
    assert fetched.returncode == 0 and fetched.stdout.strip().endswith("insurance.csv")
    assert_one_line_error(run("datasets", "fetch", "titanic"), "unknown dataset 'titanic'")


def test_demo_never_replaces_a_folder_and_says_whose_model_it_serves(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    refused = run("demo", "-o", str(tmp_path / "notes"), "--no-serve")
    assert_one_line_error(refused, "notes exists and holds no model; choose another -o")
    assert "--force" not in refused.stderr
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    other = run("demo", "-o", str(tiny_model.artifact.directory), "--no-serve")
    assert other.returncode == 0, other.stderr
    assert "already holds a model; kept" in other.stderr  # the tiny model's target: charges


def test_train_prints_leaderboard_and_writes_model(tiny_csv: Path, tmp_path: Path) -> None:
    result = run(
        "train",
        str(tiny_csv),
        "--target",
        "charges",
        "-o",
        str(tmp_path / "m"),
        "--folds",
        "3",
        "--models",
        "ridge,gradient_boosting",
    )
    assert result.returncode == 0, result.stderr
    assert "Cross-validated leaderboard" in result.stdout and "Gradient boosting" in result.stdout
    assert "engine: onnx" in result.stdout and (tmp_path / "m" / "tabship.json").is_file()
    said = " ".join(result.stdout.split())  # Rich wraps at the width it finds
    assert "task: regression of 'charges' (a number with 120 values); inferred, --task " in said
    again = run("train", str(tiny_csv), "--target", "charges", "-o", str(tmp_path / "m"))
    assert_one_line_error(
        again, "already exists and is not empty; choose another -o or pass --force"
    )


def test_train_prints_names_and_paths_as_written(tiny_table: pd.DataFrame, tmp_path: Path) -> None:
    # Rich reads `[red]...[/red]` and `[link=...]` as markup: a column or folder so named
    # was shown without its brackets, or as a link to somewhere else.
    table = tmp_path / "odd.csv"
    tiny_table.assign(**{"[red]flat[/red]": 7, "[link=http://x]a[/link]": 1}).to_csv(
        table, index=False
    )
    folder = tmp_path / "m[bold]"
    result = run("train", str(table), "-t", "charges", "-o", str(folder), "--models", "ridge")
    assert result.returncode == 0, result.stderr
    assert "column '[red]flat[/red]' has the single value 7 in every row" in result.stdout
    assert "column '[link=http://x]a[/link]' has the single value 1" in result.stdout
    assert f"model saved to {folder};" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--target", "cost"], "target column 'cost' is not in the table"),
        (["--target", "smoker", "--task", "regression"], "is not numeric (row 1 holds 'no')"),
        (["--target", "charges", "--task", "ranking"], "--task 'ranking' is not one of"),
        (["--target", "charges", "--models", "svm"], "unknown model svm for regression"),
        # Found by a red-team pass: each used to train (all 17 candidates, or every candidate
        # failing) or fail only when the model was saved.
        (["--target", "charges", "--models", " , "], "--models ' , ' names nothing"),
        (["--target", "charges", "--time-budget", "inf"], "--time-budget inf must be a finite"),
        (["--target", "charges", "--seed", "-1"], "--seed -1 must be from 0 to 4294967295"),
        (["--target", "charges", "--sort-by", ""], "--sort-by is empty"),
    ],
)
def test_train_errors_are_one_line(
    tiny_csv: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    assert_one_line_error(run("train", str(tiny_csv), "-o", str(tmp_path / "m"), *args), expected)


def test_train_on_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(run("train", str(tmp_path / "none.csv"), "--target", "y"), "no file")


def test_predict_writes_scores_and_refuses_overwrite(
    tiny_model: TrainedModel, tiny_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scored.csv"
    result = run("predict", str(tiny_model.artifact.directory), str(tiny_csv), "-o", str(out))
    assert result.returncode == 0 and "predicted 120 rows" in result.stdout
    assert "predicted_charges" in pd.read_csv(out).columns
    assert_one_line_error(
        run("predict", str(tiny_model.artifact.directory), str(tiny_csv), "-o", str(out)),
        "pass --force",
    )
    assert (
        run(
            "predict", str(tiny_model.artifact.directory), str(tiny_csv), "-o", str(out), "--force"
        ).returncode
        == 0
    )


def test_predict_with_a_tampered_model(
    tiny_model: TrainedModel, tiny_csv: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model.artifact.directory, folder)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[100] ^= 1
    (folder / "model.onnx").write_bytes(bytes(data))
    assert_one_line_error(
        run("predict", str(folder), str(tiny_csv), "-o", str(tmp_path / "o.csv")),
        "model.onnx was modified: sha256 expected",
    )
    assert not (tmp_path / "o.csv").exists()


def test_predict_bad_rows_list_every_problem(tiny_model: TrainedModel, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.DataFrame(
        {
            "age": [30, "old"],
            "bmi": [25.0, "heavy"],
            "children": [0, 1],
            "smoker": ["no", "male"],
            "region": ["east"] * 2,
        }
    ).to_csv(bad, index=False)
    result = run(
        "predict", str(tiny_model.artifact.directory), str(bad), "-o", str(tmp_path / "o.csv")
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [  # each naming the file, as the warnings do
        f"error: {bad}: row 2: age: must be a number, got 'old'",
        f"error: {bad}: row 2: bmi: must be a number, got 'heavy'",
    ]
    # Past the listed twenty, how many more: 5,000 bad rows printed 20 lines and no more.
    many = tmp_path / "many.csv"
    pd.DataFrame(
        {"age": ["old"] * 30, "bmi": [25.0] * 30, "children": [0] * 30, "smoker": ["no"] * 30,
         "region": ["east"] * 30}
    ).to_csv(many, index=False)  # fmt: skip
    lines = run(
        "predict", str(tiny_model.artifact.directory), str(many), "-o", str(tmp_path / "o.csv")
    ).stderr.splitlines()
    assert (
        len(lines) == 21 and lines[19] == f"error: {many}: row 20: age: must be a number, got 'old'"
    )
    assert lines[20] == "error: ... and 10 more problems (the first 20 listed)"


def test_predict_counts_unseen_categories_or_refuses_them(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    frame = make_tiny_table(rows=30, seed=3).drop(columns="charges")
    frame.loc[[0, 5, 9], "region"] = "west"
    frame.to_csv(rows, index=False)
    model = str(tiny_model.artifact.directory)
    lenient = run("predict", model, str(rows), "-o", str(tmp_path / "a.csv"))
    assert lenient.returncode == 0, lenient.stderr
    assert (
        "warning: rows.csv: region: 3 rows held values not seen in training; predicted as unknown"
        in lenient.stderr.splitlines()
    )
    strict = run("predict", model, str(rows), "-o", str(tmp_path / "b.csv"), "--strict-categories")
    assert_one_line_error(strict, "row 1: region: 'west' is not one of the 3 values")
    assert len(strict.stderr.splitlines()) == 3  # one line per refused row
    from_env = run(
        "predict", model, str(rows), "-o", str(tmp_path / "c.csv"),
        env={"TABSHIP_STRICT_CATEGORIES": "1"},
    )  # fmt: skip
    assert from_env.returncode == 1 and not (tmp_path / "c.csv").exists()
    overridden = run(
        "predict", model, str(rows), "-o", str(tmp_path / "d.csv"), "--no-strict-categories",
        env={"TABSHIP_STRICT_CATEGORIES": "1"},
    )  # fmt: skip
    assert overridden.returncode == 0, overridden.stderr


def test_predict_fills_gaps_training_never_had_and_counts_them(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    frame = make_tiny_table(rows=30, seed=4).drop(columns="charges")
    frame["bmi"] = frame["bmi"].astype(object)
    frame.loc[[2, 7], "bmi"] = None
    frame.loc[3, "smoker"] = "NA"
    frame.to_csv(rows, index=False)
    done = run(
        "predict", str(tiny_model.artifact.directory), str(rows), "-o", str(tmp_path / "o.csv")
    )
    assert done.returncode == 0, done.stderr
    assert {
        "warning: bmi: 2 cells empty, though training had no gaps here; filled with the training "
        "median",
        "warning: smoker: 1 cell empty, though training had no gaps here; predicted as for a "
        "value unseen in training",
    } <= set(done.stderr.splitlines())
    written = pd.read_csv(tmp_path / "o.csv", keep_default_na=False)
    assert len(written) == 30 and written["predicted_charges"].notna().all()


def test_predict_guards_formulas_unless_told_not_to(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    frame = make_tiny_table(rows=3, seed=3).drop(columns="charges")
    frame["note"] = ["=cmd|' /C calc'!A0", "@SUM(1)", "fine"]
    frame.to_csv(rows, index=False)
    model = str(tiny_model.artifact.directory)
    assert run("predict", model, str(rows), "-o", str(tmp_path / "a.csv")).returncode == 0
    assert list(pd.read_csv(tmp_path / "a.csv")["note"]) == [
        "'=cmd|' /C calc'!A0",
        "'@SUM(1)",
        "fine",
    ]
    verbatim = run("predict", model, str(rows), "-o", str(tmp_path / "b.csv"), "--no-formula-guard")
    assert verbatim.returncode == 0
    assert list(pd.read_csv(tmp_path / "b.csv")["note"]) == list(frame["note"])
    assert "Parquet output is written as it is" in " ".join(run("predict", "--help").stdout.split())


def test_builder_option_and_its_deprecated_alias(tiny_model: TrainedModel) -> None:
    help_text = run("build", "--help").stdout
    assert "--builder" in help_text and "--engine" not in help_text
    model = str(tiny_model.artifact.directory)
    alias = run("build", model, "-t", "x:1", "--engine", "lxc")
    assert alias.stderr.splitlines() == [
        "warning: --engine is deprecated on build and deploy and goes in the next release; "
        "use --builder",
        "error: --builder 'lxc' is not one of: docker, podman",
    ]
    assert_one_line_error(
        run("build", model, "-t", "x:1", "--builder", "lxc"), "--builder 'lxc' is not one of"
    )
    both = run("build", model, "-t", "x:1", "--builder", "docker", "--engine", "podman")
    assert both.returncode == 1 and "disagree; pass only --builder" in both.stderr
    dry = run(
        "deploy", "gke", model, "--project", "demo-project", "--region", "europe-west1",
        "--engine", "podman", "--dry-run",
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "deprecated" in dry.stderr and "--builder podman" in dry.stdout
    assert "podman push" in dry.stdout


def test_bad_values_and_paths_are_refused_by_name(
    tiny_model: TrainedModel, tiny_csv: Path, tmp_path: Path
) -> None:
    """A red-team pass found each of these ending in a traceback, a hang, a silent pass or a
    user's file gone."""
    model = str(tiny_model.artifact.directory)
    kept = tmp_path / "kept.txt"
    kept.write_text("mine")
    # -o an existing file where a folder is written: the system's refusal, with the path.
    assert_one_line_error(
        run("manifests", model, "--image", "registry.example/x:1", "-o", str(kept)),
        f"{kept}: File exists",
    )
    # train --force replaces a model folder only, never the user's table or files.
    table = tmp_path / "table.csv"
    table.write_bytes(tiny_csv.read_bytes())
    forced = run("train", str(table), "--target", "charges", "-o", str(table), "--force")
    assert_one_line_error(forced, "table.csv is a file, not a model folder")
    assert table.read_bytes() == tiny_csv.read_bytes()
    # An option of a mode not asked for was ignored; an empty GatewayClass meant GKE's.
    image = ("--image", "registry.example/x:1", "-o", str(tmp_path / "k8s"))
    for extra, said in (
        (["--shards", "3"], "--shards goes with --batch-job INPUT OUTPUT"),
        (["--gateway-class", "gke-l7"], "--gateway-class goes with --canary PERCENT"),
        (["--workers", "3"], "--workers goes with --dask-cluster"),
        (["--canary", "10", "--gateway-class", ""], "'' is not a GatewayClass name"),
    ):
        assert_one_line_error(run("manifests", model, *image, *extra), said)
    assert not (tmp_path / "k8s").exists()
    # gcloud took these only after earlier steps had changed the project.
    gke = ("deploy", "gke", model, "--dry-run")
    for extra, said in (
        (["--project", "", "--region", "europe-west1"], "--project '' is not a Google Cloud"),
        (["--project", "demo-project", "--region", 'a"b'], "--region 'a\"b' is not a region"),
        (["--project", "demo-project", "--region", "europe-west1", "--nodes", "-1"],
         "--nodes -1 must be from 1 to 1000"),
    ):  # fmt: skip
        assert_one_line_error(run(*gke, *extra), said)
    # rollout's names go into selectors: one that is not a name would select other objects.
    assert_one_line_error(
        run("rollout", "promote", "x,app!=y", "--dry-run"), "APP_NAME 'x,app!=y' is not a"
    )
    assert_one_line_error(
        run("rollout", "rollback", "tabship-charges", "--namespace", "Bad NS", "--dry-run"),
        "--namespace 'Bad NS' is not a Kubernetes name",
    )
    # Printed commands read as a shell would run them.
    shown = run("rollout", "promote", "tabship-charges", "--context", "my ctx", "--dry-run")
    assert shown.returncode == 0 and "kubectl --context 'my ctx' get" in shown.stdout
    # build's tag is checked before the context is written (docker refused it after).
    for tag in ("", "-x", "a b", "A_B/c"):
        assert_one_line_error(
            run("build", model, "-t", tag, "--builder", "podman"), "is not an image name"
        )
    assert_one_line_error(
        run("sign", model, "--private-key", str(tmp_path)), "is a folder; give the private key"
    )
    # sbom checks its output before fetching anything.
    assert_one_line_error(run("sbom", model, "-o", str(kept)), "already exists; choose another")
    assert kept.read_text() == "mine"
    # Empty or misplaced predict options meant their defaults, or nothing.
    scored = ("predict", model, str(tiny_csv), "-o", str(tmp_path / "scored.csv"))
    for extra, said in (
        (["--format", "csv"], "--format goes with sharded output"),
        (["--shard", ""], "--shard '' is not I/N"),
        (["--engine", ""], "unknown engine ''"),
    ):
        assert_one_line_error(run(*scored, *extra), said)
    assert not (tmp_path / "scored.csv").exists()
    # A shard count past what a Job runs: refused at once (planning 10**30 shards never ended).
    assert_one_line_error(
        run("predict", model, str(tiny_csv), "-o", str(tmp_path / "p"), "--shard", f"0/{10**30}"),
        "shards must be from 1 to 100000",
    )
    # nan passed every comparison: a failing canary was "not worse than stable".
    for flag in ("--max-error-ratio", "--max-p99-ratio"):
        assert_one_line_error(
            run("rollout", "check", "--stable", "http://127.0.0.1:9", "--canary",
                "http://127.0.0.1:9", flag, "nan"),
            f"{flag} nan must be a finite number, 1 or more",
        )  # fmt: skip
    assert_one_line_error(
        run("rollout", "check", "--stable", "http://127.0.0.1:9", "--canary",
            "http://127.0.0.1:9", "--window", "inf"),
        "--window inf must be from 0 to 3600 seconds",
    )  # fmt: skip


def test_usage_errors_share_the_one_error_path(tiny_model: TrainedModel) -> None:
    model = str(tiny_model.artifact.directory)
    where = ("--project", "demo-project", "--region", "europe-west1")
    assert_one_line_error(
        run("deploy", "gke", model, *where, "--nodes", "2", "--autopilot"),
        "--nodes makes a Standard cluster",
    )
    assert_one_line_error(
        run("manifests", model, "--image", "registry.example/x:latest", "-o", "/nonexistent/k"),
        "the manifests break policy: latest-tag",
    )


def test_serve_flags_reach_the_settings(
    tiny_model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import tabship.serve.server
    from tabship.cli import app
    from tabship.config import ServeSettings

    seen: list[ServeSettings] = []
    monkeypatch.setattr(
        tabship.serve.server, "serve", lambda model, settings, announce: seen.append(settings)
    )
    monkeypatch.setenv("TABSHIP_READ_TIMEOUT", "7")
    args = [
        "serve",
        str(tiny_model.artifact.directory),
        "--allowed-hosts",
        "API.example, localhost",
    ]
    extra = ["--max-header-bytes", "4096", "--strict-categories"]
    outcome = CliRunner().invoke(app, [*args, *extra])
    assert outcome.exit_code == 0, outcome.output
    settings = seen[0]
    assert settings.allowed_hosts == ("api.example", "localhost")
    assert (settings.max_header_bytes, settings.strict_categories) == (4096, True)
    assert settings.read_timeout == 7.0  # the variable, as no flag was given
    outcome = CliRunner().invoke(app, [*args, "--read-timeout", "2.5"])
    assert seen[1].read_timeout == 2.5 and seen[1].strict_categories is False
    assert seen[1].max_header_bytes == ServeSettings().max_header_bytes


def test_serve_checks_before_it_announces_and_says_the_port_it_bound(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    import re
    import signal
    import urllib.error
    import urllib.request

    model = str(tiny_model.artifact.directory)
    # Port 0: any free port, and the one bound is the one said (it said :0).
    server = subprocess.Popen(
        [TABSHIP, "serve", model, "--port", "0", "--allowed-hosts", ".example.com,localhost"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        found = re.search(r"on http://localhost:(\d+) ", line)
        assert found and found.group(1) != "0", line
        port = found.group(1)

        def status(host: str) -> int:
            asked = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/model", headers={"Host": host}
            )
            try:
                with urllib.request.urlopen(asked, timeout=30) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as refused:
                return refused.code

        for _ in range(100):  # the announcement comes as the socket is bound, before serving
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).close()
                break
            except OSError:
                time.sleep(0.1)
        # `.example.com`: the domain and its subdomains, as Django's ALLOWED_HOSTS.
        assert [status(h) for h in ("example.com", "api.example.com", "evil.com")] == [
            200,
            200,
            400,
        ]
        # Taken: one line naming the port, from one worker or several (a traceback before).
        for workers in ("1", "2"):
            taken = run("serve", model, "--port", port, "--workers", workers)
            assert_one_line_error(taken, f"--port {port} is in use on 127.0.0.1")
            assert "serving" not in taken.stderr  # nothing announced before the checks
        log = tmp_path / "never.db"  # nothing made for a start that cannot bind
        taken = run("serve", model, "--port", port, "--log-db", f"sqlite:///{log}")
        assert taken.returncode != 0 and not log.exists()
        assert_one_line_error(
            run("serve", model, "--workers", "2", "--host", "http://127.0.0.1"),
            "--host 'http://127.0.0.1' is not an address or a name this machine resolves",
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)


def test_the_version_is_printed() -> None:
    from tabship import __version__

    done = run("--version")
    assert done.returncode == 0 and done.stdout == f"tabship {__version__}\n"
