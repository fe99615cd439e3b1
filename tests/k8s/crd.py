"""Offline validation of manifests against the RayService CRD (../shared/kuberay): defaults
applied first as the API server does, then the CRD's OpenAPI schema with jsonschema, then a
strict check for keys the schema does not know (the CRD itself lets typos through)."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD = Path(__file__).resolve().parents[3] / "shared" / "kuberay" / "ray.io_rayservices.yaml"
# keys of a Kubernetes ObjectMeta, which the CRD schema leaves as a bare `type: object`
OBJECT_META = {"name", "namespace", "labels", "annotations", "generateName", "finalizers"}


@cache
def rayservice_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


def with_defaults(schema: dict[str, Any], instance: Any) -> Any:
    """A copy of `instance` with every schema `default` filled in where the key is absent."""
    instance = copy.deepcopy(instance)
    _fill(schema, instance)
    return instance


def _fill(schema: dict[str, Any], instance: Any) -> None:
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill(sub, instance[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in instance.items():
                if key not in schema.get("properties", {}):
                    _fill(extra, value)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill(schema["items"], item)


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def unknown_fields(schema: dict[str, Any], instance: Any, path: str = "") -> list[str]:
    """Paths of keys the schema does not declare (where it declares properties at all)."""
    found: list[str] = []
    if isinstance(instance, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        open_ended = bool(extra) or schema.get("x-kubernetes-preserve-unknown-fields")
        if props is None and not open_ended and path.endswith("metadata"):
            found += [f"{path}/{k}" for k in instance if k not in OBJECT_META]
        for key, value in instance.items():
            here = f"{path}/{key}"
            if props is not None and key in props:
                found += unknown_fields(props[key], value, here)
            elif isinstance(extra, dict):
                found += unknown_fields(extra, value, here)
            elif props is not None and not open_ended:
                found.append(here)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(instance):
            found += unknown_fields(schema["items"], item, f"{path}[{i}]")
    return found


def rayservice_problems(manifest: dict[str, Any]) -> list[str]:
    """Everything wrong with a RayService manifest, as the API server (and we) would see it."""
    schema = rayservice_schema()
    defaulted = with_defaults(schema, manifest)
    return schema_errors(schema, defaulted) + [
        f"unknown field {p}" for p in unknown_fields(schema, manifest)
    ]
