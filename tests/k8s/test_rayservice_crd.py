"""The RayService manifest against KubeRay's CRD schema: defaults applied, jsonschema, and our
strict check for unknown keys (tested here too, so a vacuous checker cannot pass)."""

from __future__ import annotations

import copy

from tests.k8s.crd import rayservice_problems, rayservice_schema, with_defaults
from tests.k8s.manifests import rayservice


def test_rayservice_manifest_is_valid_for_the_crd() -> None:
    assert rayservice_problems(rayservice()) == []


def test_defaults_fill_the_required_replica_bounds() -> None:
    manifest = copy.deepcopy(rayservice())
    group = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    del group["minReplicas"], group["maxReplicas"]
    defaulted = with_defaults(rayservice_schema(), manifest)
    filled = defaulted["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (filled["minReplicas"], filled["maxReplicas"]) == (0, 2147483647)
    assert rayservice_problems(manifest) == []


def test_a_misspelt_field_is_reported_with_its_path() -> None:
    manifest = copy.deepcopy(rayservice())
    spec = manifest["spec"]["rayClusterConfig"]
    spec["enableInTreeAutoscalling"] = True
    spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resource"] = {}
    spec["headGroupSpec"]["rayStartParam"] = {}
    manifest["metadata"]["label"] = {}
    problems = rayservice_problems(manifest)
    assert "unknown field /spec/rayClusterConfig/enableInTreeAutoscalling" in problems
    assert (
        "unknown field /spec/rayClusterConfig/workerGroupSpecs[0]/template/spec/containers[0]"
        "/resource" in problems
    )
    assert "unknown field /spec/rayClusterConfig/headGroupSpec/rayStartParam" in problems
    assert "unknown field /metadata/label" in problems


def test_wrong_types_and_bad_quantities_are_schema_errors() -> None:
    manifest = copy.deepcopy(rayservice())
    group = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    group["rayStartParams"]["num-gpus"] = 1  # must be a string
    group["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "64 GB"
    manifest["spec"]["rayClusterConfig"]["autoscalerOptions"]["upscalingMode"] = "Fast"
    problems = "\n".join(rayservice_problems(manifest))
    assert "rayStartParams/num-gpus: 1 is not of type 'string'" in problems
    assert "limits/memory" in problems
    assert "upscalingMode: 'Fast' is not one of" in problems
