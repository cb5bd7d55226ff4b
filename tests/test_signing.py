"""Signed model folders: sign, verify, and each refusal of serve, predict and build --trust."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tabship.artifact import METADATA, Artifact, _seal
from tabship.config import ServeSettings
from tabship.container import ImageOptions, render_dockerfile, serving_pins, write_context
from tabship.errors import ArtifactError, ConfigError
from tabship.runner import Runner
from tabship.signing import SIGNATURE_FILE, sign_model, verify_model
from tabship.workflow import TrainedModel

from .servers import TABSHIP, start_server


def key_pair(
    folder: Path, name: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None
) -> tuple[Path, Path]:
    """A private key and its public key as PEM files (a new P-256 key unless one is given)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    private, public = key_pair(folder, "trainers")
    other_private, other_public = key_pair(folder, "someone-else")
    return {
        "private": private,
        "public": public,
        "other": other_public,
        "other_private": other_private,
    }


@pytest.fixture
def signed(tiny_model: TrainedModel, keys: dict[str, Path], tmp_path: Path) -> Path:
    model = tmp_path / "model"
    shutil.copytree(tiny_model.artifact.directory, model)
    done = subprocess.run(
        [TABSHIP, "sign", str(model), "--private-key", str(keys["private"])],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert f"signed {model}" in done.stdout
    return model


def test_a_signed_folder_verifies_and_keeps_its_seal(signed: Path, keys: dict[str, Path]) -> None:
    verify_model(signed, keys["public"])
    assert (signed / SIGNATURE_FILE).is_file()
    Artifact.open(signed)  # model.sig is not one of the sealed files: the seal still holds
    bundle = json.loads((signed / SIGNATURE_FILE).read_text())
    assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle")
    assert not [p for p in signed.parent.iterdir() if p.name.startswith(".model.sig")]


def reseal_with_another_target(model: Path) -> None:
    """What an attacker who can write the folder does: edit tabship.json and reseal it."""
    metadata = json.loads((model / METADATA).read_text())
    metadata.pop("metadata_sha256")
    metadata["target_label"] = "Something else entirely"
    (model / METADATA).write_bytes(_seal(metadata))


def swap_a_file(model: Path) -> None:
    report = model / "report.html"
    report.write_bytes(report.read_bytes() + b"<!-- changed -->")


def add_a_file(model: Path) -> None:
    (model / "extra.onnx").write_bytes(b"not part of the signed model")


REFUSALS = {
    "missing": (lambda m: (m / SIGNATURE_FILE).unlink(), "is not signed (no model.sig)"),
    "another key": (None, "was made with another key than --trust"),
    "changed file": (
        swap_a_file,
        "does not match its signature (changed since signing: report.html)",
    ),
    "resealed tabship.json": (
        reseal_with_another_target,
        "does not match its signature (changed since signing: tabship.json)",
    ),
    "added file": (add_a_file, "extra: extra.onnx"),
    "damaged signature": (
        lambda m: (m / SIGNATURE_FILE).write_text("{not json"),
        "model.sig is not a readable signature",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_refusal_names_what_is_wrong(signed: Path, keys: dict[str, Path], case: str) -> None:
    change, said = REFUSALS[case]
    if change is not None:
        change(signed)
    trust = keys["other"] if case == "another key" else keys["public"]
    with pytest.raises(ArtifactError) as caught:
        verify_model(signed, trust)
    assert said in str(caught.value)
    if case == "resealed tabship.json":
        Artifact.open(signed)  # the seal alone is fooled; the signature is not


def test_serve_predict_and_build_refuse_before_loading(
    signed: Path, keys: dict[str, Path], tmp_path: Path, tiny_csv: Path
) -> None:
    reseal_with_another_target(signed)
    commands = {
        "serve": ["serve", str(signed), "--port", "1", "--trust", str(keys["public"])],
        "predict": [
            "predict",
            str(signed),
            str(tiny_csv),
            "-o",
            str(tmp_path / "out.csv"),
            "--trust",
            str(keys["public"]),
        ],
        "build": ["build", str(signed), "-t", "never-built:v1", "--trust", str(keys["public"])],
    }
    for name, args in commands.items():
        done = subprocess.run([TABSHIP, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, name
        assert "does not match its signature (changed since signing: tabship.json)" in done.stderr
        assert "Traceback" not in done.stderr, name
    assert not (tmp_path / "out.csv").exists()


def test_trust_comes_from_the_environment_too(signed: Path, keys: dict[str, Path]) -> None:
    settings = ServeSettings.resolve(env={"TABSHIP_TRUST": str(keys["other"])})
    assert settings.trust == keys["other"]
    from tabship.serve.server import _load

    with pytest.raises(ArtifactError, match="another key"):
        _load(signed, settings)
    assert _load(signed, ServeSettings(trust=keys["public"])).card.target == "charges"


def test_a_signed_server_starts_and_predicts(
    signed: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(signed, tmp_path, env={"TABSHIP_TRUST": str(keys["public"])})
    try:
        import httpx

        record = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}
        assert httpx.post(server.url + "/predict_api", json=record).status_code == 200
    finally:
        assert server.stop() == 0


def test_bad_key_files_are_refused(signed: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--trust .*no such file"):
        verify_model(signed, tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="--private-key .*no such file"):
        sign_model(signed, tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="cannot be read as an elliptic-curve private key"):
        sign_model(signed, keys["public"])
    # An RSA key pair (what most people have at hand): refused by name, not a traceback.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_private, rsa_public = key_pair(tmp_path, "rsa", rsa_key)
    with pytest.raises(ConfigError, match="--private-key .*rsa.pem holds a key of type RSA"):
        sign_model(signed, rsa_private, force=True)
    with pytest.raises(ConfigError, match="--trust .*rsa.pub.pem holds a key of type RSA"):
        verify_model(signed, rsa_public)
    verify_model(signed, keys["public"])  # the signature refused keys left as it was


def test_a_signature_is_replaced_only_when_asked(signed: Path, keys: dict[str, Path]) -> None:
    before = (signed / "model.sig").read_bytes()
    again = [TABSHIP, "sign", str(signed), "--private-key", str(keys["other_private"])]
    done = subprocess.run(again, capture_output=True, text=True)
    assert done.returncode == 1
    assert "model.sig already exists (the folder is signed); pass --force" in done.stderr
    assert (signed / "model.sig").read_bytes() == before
    verify_model(signed, keys["public"])
    done = subprocess.run([*again, "--force"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    verify_model(signed, keys["other"])


def test_the_image_carries_the_key_and_verifies_at_start(
    signed: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    options = ImageOptions(tag="signed:v1", trust=keys["public"])
    dockerfile = render_dockerfile(Artifact.open(signed), options)
    assert "COPY trust.pem /opt/app/trust.pem\nENV TABSHIP_TRUST=/opt/app/trust.pem\n" in dockerfile
    assert "TABSHIP_TRUST" not in render_dockerfile(Artifact.open(signed), ImageOptions(tag="u:1"))
    pins = serving_pins("onnx", signed=True)
    assert {"model-signing", "pyopenssl", "cryptography"} <= set(pins)
    assert "model-signing" not in serving_pins("onnx")
    recorded: list[list[str]] = []

    class Recording(Runner):
        def run(self, args: list[str], step: str = "", **_: object) -> None:  # type: ignore[override]
            recorded.append(args)

    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    for name, version in pins.items():  # stand-in wheels: only the names are read here
        (wheelhouse / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"w")
    options = ImageOptions(tag="signed:v1", trust=keys["public"], context_dir=tmp_path / "ctx")
    context = write_context(Artifact.open(signed), options, Recording(), wheelhouse)
    assert (context / "trust.pem").read_bytes() == keys["public"].read_bytes()
    assert (context / "model" / SIGNATURE_FILE).read_bytes() == (
        signed / SIGNATURE_FILE
    ).read_bytes()
    verify_model(context / "model", context / "trust.pem")  # the copy is the signed folder
    assert not list(context.rglob("trainers.pem"))  # the private key never enters the context
    assert recorded == []


def test_mismatch_names_are_read_whatever_the_digest_bytes(tmp_path: Path) -> None:
    from tabship.signing import _refusal

    # model-signing prints digests as bytes reprs; a quote among them changes the list's quoting.
    problems = [
        "Hash mismatch for 'tabship.json': Expected b'\\'q\"', Actual b'x'",
        "Hash mismatch for 'report.html': Expected b'a', Actual b'b'",
        f"Extra files found in model '{tmp_path}': extra.onnx",
    ]
    said = _refusal(tmp_path, tmp_path / "k.pem", f"Signature mismatch: {problems}")
    assert "changed since signing: report.html, tabship.json" in said
    assert "extra: extra.onnx" in said


def test_an_encrypted_key_signs_with_its_password_from_a_variable(
    signed: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    public = tmp_path / "locked.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    base = [TABSHIP, "sign", str(signed), "--private-key", str(locked), "--force"]
    env = {"PATH": "/usr/bin:/bin", "KEY_PASSWORD": "correct horse"}
    done = subprocess.run(
        [*base, "--password-env", "KEY_PASSWORD"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    verify_model(signed, public)
    wrong = subprocess.run(
        [*base, "--password-env", "KEY_PASSWORD"],
        capture_output=True,
        text=True,
        env={**env, "KEY_PASSWORD": "wrong"},
    )
    assert wrong.returncode == 1 and "password (--password-env) is missing or wrong" in wrong.stderr
    unset = subprocess.run(
        [*base, "--password-env", "NOPE"], capture_output=True, text=True, env=env
    )
    assert unset.returncode == 1 and "the environment variable NOPE is not set" in unset.stderr
    assert "correct horse" not in done.stdout + done.stderr + wrong.stderr


def test_a_folder_swapped_after_the_check_is_refused_before_loading(
    signed: Path, keys: dict[str, Path]
) -> None:
    from tabship.predictor import Predictor

    sealed = verify_model(signed, keys["public"])
    assert sealed == Artifact.open(signed).sha256
    assert Predictor.load(signed, sealed=sealed).card.sha256 == sealed
    reseal_with_another_target(signed)  # what a writer racing the loader would do
    with pytest.raises(ArtifactError, match="changed between its signature check and its loading"):
        Predictor.load(signed, sealed=sealed)
