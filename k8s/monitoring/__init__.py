"""Grafana dashboard (built in Python, written as JSON) and its provisioning command."""
