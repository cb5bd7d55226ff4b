"""Signed model folders: OpenSSF model signing with an elliptic-curve key, checked on load.

The sha256 seal in tabship.json catches accidents; anyone who can write the folder can also
reseal it. A signature made with a private key that only the trainers hold cannot be remade
that way: `sign_model` writes `model.sig` (a Sigstore bundle, the OpenSSF `model-signing`
format) over every file of the folder, and `verify_model` refuses the folder before anything
in it is deserialised unless the signature is there, was made with the trusted key, and every
file (tabship.json included, resealed or not) is the one signed, with none added or removed.
The seal itself stays valid: model.sig is not one of the files tabship.json lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from tabship.artifact import METADATA, Artifact
from tabship.errors import ArtifactError, ConfigError, OutputExistsError

SIGNATURE_FILE = "model.sig"
_NEW_KEY = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"
# model-signing reports a mismatch as the repr of a list of strings: quotes inside may come
# escaped (\\'), depending on the digest bytes printed beside them.
_MISMATCH = re.compile(r"Hash mismatch for \\?'([^'\\]+)\\?'")
_LISTED = re.compile(r"(Extra|Missing) files (?:found )?in model \\?'[^']*\\?': ([^\"'\]\\]+)")


def _hashing() -> Any:
    from model_signing import hashing

    # The signature cannot cover itself; everything else in the folder is covered.
    return hashing.Config().set_ignored_paths(  # type: ignore[no-untyped-call]
        paths=[SIGNATURE_FILE], ignore_git_paths=False
    )


def _key_file(path: Path, what: str, flag: str) -> Path:
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give the {what} as a PEM file")
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file; give the {what} as a PEM file")
    return path


def _elliptic(path: Path, flag: str, private: bool, password: bytes | None = None) -> None:
    """Refuse a key that is not an elliptic-curve one before model-signing reads it: an RSA
    key failed inside it with an AttributeError (a traceback for the user)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )

    kind = "private" if private else "public"
    try:
        data = path.read_bytes()
        key = (
            load_pem_private_key(data, password=password) if private else load_pem_public_key(data)
        )
    except (ValueError, TypeError, OSError, UnsupportedAlgorithm) as exc:
        if not private:
            raise ConfigError(f"{flag} {path} is not an EC public key in PEM: {exc}") from None
        raise ConfigError(
            f"{flag} {path} cannot be read as an elliptic-curve private key in PEM ({_NEW_KEY}), "
            f"or its password (--password-env) is missing or wrong: {exc}"
        ) from None
    wanted = ec.EllipticCurvePrivateKey if private else ec.EllipticCurvePublicKey
    if not isinstance(key, wanted):
        found = type(key).__name__.removeprefix("_")
        raise ConfigError(
            f"{flag} {path} holds a key of type {found}; model signing here takes an "
            f"elliptic-curve {kind} key ({_NEW_KEY})"
        )


def sign_model(
    model: Path, private_key: Path, password: str | None = None, force: bool = False
) -> Path:
    """Write model.sig into a verified model folder, signed with an EC private key (PEM);
    an existing signature is replaced only when `force`."""
    from model_signing import signing

    Artifact.open(model)  # sign only what the seal vouches for
    _key_file(private_key, "private key", "--private-key")
    # Annotated as str, but handed to cryptography, which takes bytes only.
    secret = password.encode() if password is not None else None
    _elliptic(private_key, "--private-key", True, secret)
    if (model / SIGNATURE_FILE).exists() and not force:
        raise OutputExistsError(
            f"{model / SIGNATURE_FILE} already exists (the folder is signed); pass --force to "
            "replace the signature"
        )
    config = signing.Config().set_hashing_config(_hashing())  # type: ignore[no-untyped-call]
    config.use_elliptic_key_signer(private_key=private_key, password=secret)  # type: ignore[arg-type]
    # Written beside the folder (inside, it would be signed too), then moved in at once, so
    # a reader never sees half a signature.
    handle, scratch = tempfile.mkstemp(prefix=f".{model.name}.sig.", dir=model.parent)
    os.close(handle)
    try:
        config.sign(model, Path(scratch))
        Path(scratch).replace(model / SIGNATURE_FILE)
    except Exception:
        Path(scratch).unlink(missing_ok=True)
        raise
    return model / SIGNATURE_FILE


def verify_model(model: Path, public_key: Path) -> str:
    """Refuse `model` unless model.sig was made with `public_key` over exactly these files.

    Returns the seal (metadata sha256) of the signed tabship.json, read and checked here, for
    the loader to hold the folder it opens to (`Predictor.load(..., sealed=...)`): a folder
    swapped between this check and the load is then refused too.
    """
    from model_signing import verifying

    _key_file(public_key, "trusted public key", "--trust")
    _elliptic(public_key, "--trust", False)
    signature = model / SIGNATURE_FILE
    if signature.is_symlink() or not signature.is_file():
        raise ArtifactError(
            f"{model} is not signed (no {SIGNATURE_FILE}), and --trust asks for a signature; "
            f"sign it with `tabship sign {model} --private-key KEY.pem`"
        )
    config = verifying.Config().use_elliptic_key_verifier(  # type: ignore[no-untyped-call]
        public_key=public_key
    )
    try:
        config.set_hashing_config(_hashing()).verify(model, signature)
    except ValueError as exc:
        raise ArtifactError(_refusal(model, public_key, str(exc))) from None
    except Exception as exc:  # a damaged bundle fails inside the parser with its own types
        raise ArtifactError(
            f"{signature} is not a readable signature ({type(exc).__name__}); sign the folder again"
        ) from None
    return _signed_seal(model, public_key, signature)


def _signed_seal(model: Path, public_key: Path, signature: Path) -> str:
    """The metadata sha256 inside tabship.json, from bytes whose digest the signature lists."""
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    statement = sign_ec_key.Verifier(public_key).verify(sign_sigstore_pb.Signature.read(signature))
    digests = {d.identifier: d.digest.digest_hex for d in statement.resource_descriptors()}
    raw = (model / METADATA).read_bytes()
    if digests.get(METADATA) != hashlib.sha256(raw).hexdigest():
        raise ArtifactError(f"{model / METADATA} changed while its signature was checked")
    try:
        return str(json.loads(raw)["metadata_sha256"])
    except (ValueError, KeyError, TypeError):
        raise ArtifactError(f"{model / METADATA} is not a tabship metadata file") from None


def check_sealed(opened: str, sealed: str, model: Path) -> None:
    """Refuse a folder whose opened seal is not the one the signature vouched for."""
    if opened != sealed:
        raise ArtifactError(
            f"{model} changed between its signature check and its loading; load it again"
        )


def _refusal(model: Path, public_key: Path, detail: str) -> str:
    if detail.startswith("Key mismatch"):
        return (
            f"{model / SIGNATURE_FILE} was made with another key than --trust {public_key}; "
            "the folder is not from whom you trust"
        )
    if detail.startswith("Signature mismatch"):
        changed = sorted(set(_MISMATCH.findall(detail)))
        parts = [f"changed since signing: {', '.join(changed)}"] if changed else []
        parts += [f"{kind.lower()}: {names.strip()}" for kind, names in _LISTED.findall(detail)]
        return f"{model} does not match its signature ({'; '.join(parts) or detail[:300]})"
    return (
        f"{model / SIGNATURE_FILE} is not a readable signature for --trust {public_key} "
        f"({detail[:200]}); sign the folder again"
    )
