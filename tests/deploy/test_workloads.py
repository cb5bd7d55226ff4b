"""The batch Job and the DaskCluster: their content, the official schemas, the policy checker,
the Job's own command run for real, and `deploy k8s|gke --batch-job`."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tabship.cli import app
from tabship.deploy.batch_job import BatchJobOptions, render_batch_job
from tabship.deploy.dask_cluster import DaskClusterOptions, render_dask_cluster
from tabship.deploy.manifest_options import ManifestOptions
from tabship.deploy.manifests import render_manifests
from tabship.deploy.policy import check_objects
from tabship.deploy.workload_policy import WORKLOAD_RULES
from tabship.errors import ConfigError
from tabship.workflow import TrainedModel

from ..conftest import make_tiny_table

VALIDATE = str(Path(sys.executable).with_name("kubernetes-validate"))
IMAGE = "registry.example/team/charges:v1"
BATCH = BatchJobOptions(source="gs://bucket/in/*.parquet", output="gs://bucket/out", shards=8)


def _kinds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


@pytest.fixture
def job_objects(tiny_model: TrainedModel) -> list[dict[str, Any]]:
    return render_batch_job(tiny_model.artifact, ManifestOptions(image=IMAGE), BATCH)


@pytest.fixture
def dask_objects(tiny_model: TrainedModel) -> list[dict[str, Any]]:
    return render_dask_cluster(
        tiny_model.artifact, ManifestOptions(image=IMAGE), DaskClusterOptions()
    )


def _job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _kinds(objects)["Job"]


def _job_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _job(objects)["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_job_is_indexed_and_secured_like_the_deployment(
    tiny_model: TrainedModel, job_objects: list[dict[str, Any]]
) -> None:
    spec = _job(job_objects)["spec"]
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"]) == (8, 8)
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (2, 0)
    assert spec["podReplacementPolicy"] == "Failed"
    served = _kinds(render_manifests(tiny_model.artifact, ManifestOptions(image=IMAGE)))
    serving_pod = served["Deployment"]["spec"]["template"]["spec"]
    pod = _job_pod(job_objects)
    assert pod["securityContext"] == serving_pod["securityContext"]
    container = pod["containers"][0]
    assert container["securityContext"] == serving_pod["containers"][0]["securityContext"]
    assert container["image"] == IMAGE and pod["restartPolicy"] == "Never"
    # The shard number comes from JOB_COMPLETION_INDEX, which Kubernetes sets in each pod.
    assert container["command"][3:] == [
        "predict",
        "/opt/app/model",
        "gs://bucket/in/*.parquet",
        "--output",
        "gs://bucket/out",
        "--shards",
        "8",
        "--format",
        "parquet",
        "--force",
    ]
    assert "JOB_COMPLETION_INDEX" not in yaml.safe_dump(_job(job_objects))


def test_manifests_pass_policy(
    job_objects: list[dict[str, Any]], dask_objects: list[dict[str, Any]]
) -> None:
    assert check_objects(job_objects) == []
    assert check_objects(dask_objects) == []


def _validate(paths: list[Path]) -> None:
    for version in ("1.30.0", "1.37.0"):
        result = subprocess.run(
            [VALIDATE, "--strict", "--kubernetes-version", version, *map(str, paths)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("passed") == len(paths)


def test_job_and_dask_pods_validate_against_official_schemas(
    job_objects: list[dict[str, Any]], dask_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    paths = []
    for obj in job_objects:
        paths.append(tmp_path / f"{obj['kind']}.yaml")
        paths[-1].write_text(yaml.safe_dump(obj))
    # The DaskCluster is a custom resource: its two pod specs are checked as the Pods they become.
    cluster = _kinds(dask_objects)["DaskCluster"]
    for role in ("scheduler", "worker"):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"dask-{role}"},
            "spec": cluster["spec"][role]["spec"],
        }
        paths.append(tmp_path / f"pod-{role}.yaml")
        paths[-1].write_text(yaml.safe_dump(pod))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dask-scheduler"},
        "spec": cluster["spec"]["scheduler"]["service"],
    }
    paths.append(tmp_path / "service.yaml")
    paths[-1].write_text(yaml.safe_dump(service))
    _validate(paths)


def test_dask_cluster_runs_dask_on_the_hardened_image(dask_objects: list[dict[str, Any]]) -> None:
    cluster = _kinds(dask_objects)["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]
    assert worker["command"][:2] == ["/opt/venv/bin/dask", "worker"]
    assert scheduler["command"][:2] == ["/opt/venv/bin/dask", "scheduler"]
    assert worker["image"] == scheduler["image"] == IMAGE
    assert worker["securityContext"]["runAsUser"] >= 10000
    assert cluster["spec"]["worker"]["replicas"] == 4


def _worker(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _kinds(objects)["DaskCluster"]["spec"]["worker"]["spec"]["containers"][0]  # type: ignore[no-any-return]


BAD_JOB: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "job-indexed-completion": lambda o: _job(o)["spec"].update(completionMode="NonIndexed"),
    "job-retries-per-index": lambda o: _job(o)["spec"].pop("backoffLimitPerIndex"),
    "job-restart-policy": lambda o: _job_pod(o).update(restartPolicy="OnFailure"),
    "job-ttl-after-finished": lambda o: _job(o)["spec"].pop("ttlSecondsAfterFinished"),
    "non-isolated-pod": lambda o: o.remove(_kinds(o)["NetworkPolicy"]),
    # The Deployment's rules hold for the Job's pods too.
    "privileged-container": lambda o: _job_pod(o)["containers"][0]["securityContext"].update(
        privileged=True
    ),
    "default-service-account": lambda o: _job_pod(o).pop("serviceAccountName"),
}
BAD_DASK: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "dask-worker-command": lambda o: _worker(o).update(command=["python", "-m", "http.server"]),
    "no-read-only-root-fs": lambda o: _worker(o)["securityContext"].update(
        readOnlyRootFilesystem=False
    ),
    "non-isolated-pod": lambda o: o.remove(_kinds(o)["NetworkPolicy"]),
}


def test_every_workload_rule_has_a_bad_fixture() -> None:
    assert set(WORKLOAD_RULES) <= set(BAD_JOB) | set(BAD_DASK)


@pytest.mark.parametrize("rule", sorted(BAD_JOB))
def test_each_bad_job_fires_its_rule(job_objects: list[dict[str, Any]], rule: str) -> None:
    bad = copy.deepcopy(job_objects)
    BAD_JOB[rule](bad)
    assert {f.rule for f in check_objects(bad)} == {rule}


@pytest.mark.parametrize("rule", sorted(BAD_DASK))
def test_each_bad_dask_cluster_fires_its_rule(
    dask_objects: list[dict[str, Any]], rule: str
) -> None:
    bad = copy.deepcopy(dask_objects)
    BAD_DASK[rule](bad)
    assert {f.rule for f in check_objects(bad)} == {rule}


def test_the_jobs_own_command_scores_its_shard(
    tiny_model: TrainedModel, job_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The rendered command, run here as pod 3 of 8 would run it (paths mapped to this machine)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for number in range(8):
        make_tiny_table(rows=40, seed=number).drop(columns="charges").to_parquet(
            inputs / f"part-{number}.parquet"
        )
    mapping = {
        "/opt/venv/bin/python": sys.executable,
        "/opt/app/model": str(tiny_model.artifact.directory),
        BATCH.source: str(inputs / "*.parquet"),
        BATCH.output: str(tmp_path / "out"),
    }
    command = [
        mapping.get(word, word) for word in _job_pod(job_objects)["containers"][0]["command"]
    ]
    result = subprocess.run(
        command, env={**os.environ, "JOB_COMPLETION_INDEX": "3"}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    out = pd.read_parquet(tmp_path / "out" / "part-00003-of-00008.parquet")
    assert len(out) == 40 and "predicted_charges" in out.columns


def test_cli_writes_checked_folders(tiny_model: TrainedModel, tmp_path: Path) -> None:
    runner = CliRunner()
    model = str(tiny_model.artifact.directory)
    batch = runner.invoke(
        app,
        [
            "manifests",
            model,
            "--image",
            IMAGE,
            "--batch-job",
            "gs://b/in/",
            "gs://b/out/",
            "--shards",
            "4",
            "-o",
            str(tmp_path / "batch"),
        ],
    )
    assert batch.exit_code == 0, batch.output
    dask = runner.invoke(
        app,
        [
            "manifests",
            model,
            "--image",
            IMAGE,
            "--dask-cluster",
            "--workers",
            "8",
            "-o",
            str(tmp_path / "dask"),
        ],
    )
    assert dask.exit_code == 0, dask.output
    for folder in ("batch", "dask"):
        checked = runner.invoke(app, ["check-manifests", str(tmp_path / folder)])
        assert checked.exit_code == 0, checked.output
    job = yaml.safe_load((tmp_path / "batch" / "batch-job.yaml").read_text())
    assert job["spec"]["completions"] == 4
    missing = runner.invoke(
        app, ["manifests", model, "--image", IMAGE, "--batch-job", "a", "b", "-o", "x"]
    )
    assert missing.exit_code == 1 and "--batch-job needs --shards N" in missing.output


def test_bad_batch_options_are_refused(tiny_model: TrainedModel) -> None:
    for batch, message in [
        (BatchJobOptions("gs://a", "gs://b", 0), "--shards 0"),
        (BatchJobOptions("gs://a", "gs://b", 4, parallelism=9), "--parallelism 9"),
        (BatchJobOptions("gs://a\nkind: Pod", "gs://b", 4), "must be a path or URL on one line"),
        # The pod's predict would read them as its own options, or as nothing.
        (BatchJobOptions("-x", "gs://b", 4), "INPUT '-x' must be a path or URL"),
        (BatchJobOptions("gs://a", " ", 4), "OUTPUT ' ' must be a path or URL"),
    ]:
        with pytest.raises(ConfigError, match=message):
            render_batch_job(tiny_model.artifact, ManifestOptions(image=IMAGE), batch)


def test_deploy_dry_runs_show_the_job_steps(tiny_model: TrainedModel, tmp_path: Path) -> None:
    runner = CliRunner()
    model = str(tiny_model.artifact.directory)
    k8s = runner.invoke(
        app,
        [
            "deploy",
            "k8s",
            model,
            "--image",
            IMAGE,
            "--batch-job",
            "gs://b/in/",
            "gs://b/out/",
            "--shards",
            "4",
            "--dry-run",
            "-o",
            str(tmp_path / "k8s"),
        ],
    )
    assert k8s.exit_code == 0, k8s.output
    assert "kubectl delete job tabship-charges-batch --ignore-not-found --wait" in k8s.output
    assert "kubectl wait job/tabship-charges-batch --for=condition=Complete" in k8s.output
    assert "rollout" not in k8s.output
    gke = runner.invoke(
        app,
        [
            "deploy",
            "gke",
            model,
            "--project",
            "demo-project",
            "--region",
            "europe-west1",
            "--batch-job",
            "gs://b/in/",
            "gs://b/out/",
            "--shards",
            "4",
            "--dry-run",
        ],
    )
    assert gke.exit_code == 0, gke.output
    assert "gcloud container clusters create" in gke.output
    assert "kubectl apply --kustomize" in gke.output and "wait for every shard" in gke.output


def test_deploy_k8s_batch_job_runs_and_waits(tiny_model: TrainedModel, tmp_path: Path) -> None:
    """Against a kubectl stand-in (no cluster here) that reports the Job complete."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "kubectl.log"
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:3] == ['get', 'job']:\n    print('4//SuccessCriteriaMet Complete')\n"
    )
    kubectl.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tabship",
            "deploy",
            "k8s",
            str(tiny_model.artifact.directory),
            "--image",
            IMAGE,
            "--batch-job",
            "gs://b/in/",
            "gs://b/out/",
            "--shards",
            "4",
            "-o",
            str(tmp_path / "k8s"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "every shard of gs://b/in/ is scored into gs://b/out/" in result.stdout
    lines = log.read_text().splitlines()
    assert lines[0] == "delete job tabship-charges-batch --ignore-not-found --wait"
    assert lines[1] == f"apply --kustomize {tmp_path / 'k8s'}"
    assert lines[2].startswith("get job tabship-charges-batch --output jsonpath=")
