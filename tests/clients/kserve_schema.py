"""Run by the kserve SDK's own environment: a strict offline check of KServe objects.

Each object is walked against the SDK's generated models (the CRDs' OpenAPI schemas, and the
Kubernetes client's for pod fields): every key must be a field the model knows and every
value of the field's type. Prints one problem per line; exits 1 if there are any.
Usage: kserve_schema.py FILE.yaml ...
"""

from __future__ import annotations

import re
import sys
from typing import Any

import kserve.models
import kubernetes.client.models
import yaml

ROOTS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
}
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def model_class(name: str) -> Any:
    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    return None


def check(value: Any, type_name: str, where: str, problems: list[str]) -> None:
    if value is None:
        return
    # The kserve models write list[X] and dict(str, X); the Kubernetes client List[X], Dict[str, X].
    listed = re.fullmatch(r"[lL]ist\[(.+)\]", type_name)
    mapped = re.fullmatch(r"dict\((\w+), (.+)\)|Dict\[(\w+), (.+)\]", type_name)
    if listed:
        if not isinstance(value, list):
            problems.append(f"{where}: must be a list")
            return
        for index, item in enumerate(value):
            check(item, listed.group(1), f"{where}[{index}]", problems)
    elif mapped:
        if not isinstance(value, dict):
            problems.append(f"{where}: must be a mapping")
            return
        for key, item in value.items():
            check(item, mapped.group(2) or mapped.group(4), f"{where}.{key}", problems)
    elif type_name in SCALARS:
        if not isinstance(value, SCALARS[type_name]) or (type_name != "bool" and value is True):
            problems.append(f"{where}: {value!r} is not {type_name}")
    else:
        check_model(value, type_name, where, problems)


def check_model(value: Any, type_name: str, where: str, problems: list[str]) -> None:
    cls = model_class(type_name)
    if cls is None:
        problems.append(f"{where}: no SDK model {type_name}")
    elif not isinstance(value, dict):
        problems.append(f"{where}: must be an object ({type_name})")
    else:
        fields = {wire: attr for attr, wire in cls.attribute_map.items()}
        for key, item in value.items():
            if key not in fields:
                problems.append(f"{where}.{key}: not a field of {type_name}")
            else:
                check(item, cls.openapi_types[fields[key]], f"{where}.{key}", problems)


def main(paths: list[str]) -> int:
    problems: list[str] = []
    for path in paths:
        with open(path) as handle:
            for obj in yaml.safe_load_all(handle):
                root = ROOTS.get((obj.get("apiVersion"), obj.get("kind")))
                where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
                if root is None:
                    problems.append(f"{where}: unknown apiVersion/kind")
                    continue
                check(obj, root, where, problems)
    print("\n".join(problems) or "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
