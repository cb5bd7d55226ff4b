"""The prediction log in manifests: the URL from a Secret, egress to it, or SQLite on an emptyDir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tabship.deploy.manifest_options import ManifestOptions
from tabship.deploy.manifests import render_manifests, write_manifests
from tabship.deploy.policy import check_objects
from tabship.errors import ConfigError
from tabship.workflow import TrainedModel

VALIDATE = str(Path(sys.executable).with_name("kubernetes-validate"))
IMAGE = "registry.example/team/charges:v1"


def kinds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return kinds(objects)["Deployment"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_a_secret_url_and_egress_to_the_database(tiny_model: TrainedModel, tmp_path: Path) -> None:
    options = ManifestOptions(image=IMAGE, log_db_secret="prediction-log", log_db_port=6432)
    objects = render_manifests(tiny_model.artifact, options)
    env = {e["name"]: e for e in pod(objects)["containers"][0]["env"]}
    assert env["TABSHIP_LOG_DB"] == {
        "name": "TABSHIP_LOG_DB",
        "valueFrom": {"secretKeyRef": {"name": "prediction-log", "key": "url"}},
    }
    egress = kinds(objects)["NetworkPolicy"]["spec"]["egress"]
    ports = {(p["port"], p["protocol"]) for rule in egress for p in rule["ports"]}
    assert ports == {(6432, "TCP"), (53, "UDP"), (53, "TCP")}
    assert check_objects(objects) == []
    written = write_manifests(tiny_model.artifact, options, tmp_path / "k8s")
    text = "".join(p.read_text() for p in written)
    assert "postgresql" not in text  # the URL is never in a manifest
    resources = [str(p) for p in written if p.name != "kustomization.yaml"]
    done = subprocess.run(
        [VALIDATE, "--strict", "--kubernetes-version", "1.37.0", *resources],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_sqlite_on_an_empty_dir(tiny_model: TrainedModel) -> None:
    objects = render_manifests(tiny_model.artifact, ManifestOptions(image=IMAGE, log_sqlite=True))
    spec = pod(objects)
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TABSHIP_LOG_DB"] == "sqlite:////var/lib/tabship/predictions.db"
    assert {"name": "prediction-log", "mountPath": "/var/lib/tabship"} in container["volumeMounts"]
    assert any(v["name"] == "prediction-log" and "emptyDir" in v for v in spec["volumes"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert kinds(objects)["NetworkPolicy"]["spec"]["egress"] == []
    assert check_objects(objects) == []


def test_no_log_means_no_egress(tiny_model: TrainedModel) -> None:
    objects = render_manifests(tiny_model.artifact, ManifestOptions(image=IMAGE))
    assert kinds(objects)["NetworkPolicy"]["spec"]["egress"] == []
    assert all(e["name"] != "TABSHIP_LOG_DB" for e in pod(objects)["containers"][0]["env"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"log_db_secret": "Bad Name\\n"}, "is not a Secret name"),
        ({"log_db_secret": "db", "log_sqlite": True}, "exclude each other"),
        ({"log_db_secret": "db", "log_db_port": 70000}, "is not a TCP port"),
    ],
)
def test_bad_log_options_are_refused(
    tiny_model: TrainedModel, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        render_manifests(tiny_model.artifact, ManifestOptions(image=IMAGE, **options))
