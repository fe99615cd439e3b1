"""The Ray pods are closed to the outside but for Serve's port, and Ray's own APIs (the
dashboard's Jobs API, the ShadowRay path CVE-2023-48022, the GCS) demand Ray's token.
Offline, over the generated manifests: a small evaluator of NetworkPolicy ingress rules."""

from __future__ import annotations

import importlib
from typing import Any

from deployments.proxy_edge import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from tests.k8s.manifests import containers, head_group, manifests, rayservice, worker_groups

NAMESPACE = "tandem"
GCS, DASHBOARD, CLIENT, SERVE, METRICS, AGENT = 6379, 8265, 10001, 8000, 8080, 52365
RAY_POD = {"app.kubernetes.io/part-of": "tandem"}
OPERATOR = ("default", {"app.kubernetes.io/name": "kuberay-operator"})
PROMETHEUS = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
OUTSIDER = ("elsewhere", {"app": "curl"})
NEIGHBOUR = (NAMESPACE, {"app": "something-else"})  # another pod in the same namespace


def policy() -> dict[str, Any]:
    (doc,) = [d for d in manifests() if d["kind"] == "NetworkPolicy"]
    return doc


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"unsupported selector {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_matches(peer: dict[str, Any], namespace: str, labels: dict[str, str]) -> bool:
    """A `from` entry, as Kubernetes reads it (podSelector alone: the policy's namespace)."""
    ns_labels = {"kubernetes.io/metadata.name": namespace}
    if "namespaceSelector" in peer:
        in_namespace = matches(peer["namespaceSelector"], ns_labels)
    else:
        in_namespace = namespace == policy()["metadata"]["namespace"]
    return in_namespace and matches(peer.get("podSelector", {}), labels)


def allowed(source: tuple[str, dict[str, str]], port: int, target: dict[str, str]) -> bool:
    spec = policy()["spec"]
    if not matches(spec["podSelector"], target) or "Ingress" not in spec["policyTypes"]:
        return True  # not isolated by this policy
    namespace, labels = source
    for rule in spec.get("ingress", []):
        peers = rule.get("from")
        ports = rule.get("ports")
        if peers is not None and not any(peer_matches(p, namespace, labels) for p in peers):
            continue
        if ports is not None and not any(p["port"] == port for p in ports):
            continue
        return True
    return False


def test_the_policy_isolates_every_ray_pod():
    for group in [head_group(), *worker_groups()]:
        labels = group["template"]["metadata"]["labels"]
        assert matches(policy()["spec"]["podSelector"], labels)
        assert labels == RAY_POD


def test_from_outside_only_serves_port_is_open():
    for source in (OUTSIDER, NEIGHBOUR):
        assert allowed(source, SERVE, RAY_POD)
        for port in (GCS, DASHBOARD, CLIENT, METRICS, AGENT, 12345):
            assert not allowed(source, port, RAY_POD), (source, port)


def test_ray_pods_reach_each_other_and_the_operator_and_prometheus_their_ports():
    ray_pod = (NAMESPACE, RAY_POD)
    assert all(allowed(ray_pod, port, RAY_POD) for port in (GCS, DASHBOARD, 12345))
    assert allowed(OPERATOR, DASHBOARD, RAY_POD) and allowed(OPERATOR, AGENT, RAY_POD)
    assert not allowed(OPERATOR, GCS, RAY_POD)
    assert allowed(PROMETHEUS, METRICS, RAY_POD)
    assert not allowed(PROMETHEUS, DASHBOARD, RAY_POD)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_every_ray_container_demands_rays_token_from_the_secret_kuberay_uses():
    auth = rayservice()["spec"]["rayClusterConfig"]["authOptions"]
    assert auth["mode"] == "token"
    for group in [head_group(), *worker_groups()]:
        for container in containers(group):
            env = env_of(container)
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": auth["secretName"], "key": "auth_token"}


def test_every_serve_proxy_gets_the_edge_limits():
    module, _, name = PROXY_CALLBACK.partition(":")
    assert callable(getattr(importlib.import_module(module), name))
    for group in [head_group(), *worker_groups()]:
        for container in containers(group):
            assert env_of(container)[PROXY_CALLBACK_ENV]["value"] == PROXY_CALLBACK


def test_the_evaluator_denies_what_no_rule_allows():
    spec = policy()["spec"]
    saved = spec["ingress"]
    try:
        spec["ingress"] = [{"ports": [{"protocol": "TCP", "port": SERVE}]}]
        assert not allowed((NAMESPACE, RAY_POD), GCS, RAY_POD)
        spec["ingress"] = [{}]  # an empty rule allows everything
        assert allowed(OUTSIDER, GCS, RAY_POD)
    finally:
        spec["ingress"] = saved
