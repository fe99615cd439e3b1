"""Kubernetes deployment of Tandem (KubeRay RayService) and its monitoring.

`python -m k8s.generate` writes the manifests in this directory from config.gpu.yaml and
k8s/cluster.yaml; `python -m k8s.monitoring.provision` sets up Grafana. See k8s/README.md.
"""
