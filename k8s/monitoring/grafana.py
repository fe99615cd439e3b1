"""Grafana API calls the provisioning needs, each failure turned into a ProvisionError that
says what went wrong and what to check (URL, credentials, permissions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaUnauthorizedError,
)

T = TypeVar("T")


class ProvisionError(RuntimeError):
    pass


class Grafana:
    def __init__(self, url: str, credential: str | tuple[str, str] | None, timeout_s: float):
        self.url = url.rstrip("/")
        self.api = GrafanaApi.from_url(self.url, credential=credential, timeout=timeout_s)

    def call(self, what: str, fn: Callable[[], T], missing_ok: bool = False) -> T | None:
        """Run one API call; `missing_ok`: a 404 returns None instead of failing."""
        try:
            return fn()
        except GrafanaUnauthorizedError as e:
            raise ProvisionError(
                f"Grafana at {self.url} refused the credentials while trying to {what} (401); "
                "check --user/--password or --token (GRAFANA_TOKEN)"
            ) from e
        except GrafanaClientError as e:
            if e.status_code == 404 and missing_ok:
                return None
            if e.status_code == 403:
                raise ProvisionError(
                    f"the Grafana user may not {what} (403); use an Admin user or a service "
                    "account token with the Admin role"
                ) from e
            raise ProvisionError(f"Grafana rejected the request to {what}: {e.message}") from e
        except GrafanaServerError as e:
            raise ProvisionError(f"Grafana failed to {what}: {e.message}") from e
        except (niquests.exceptions.RequestException, GrafanaException) as e:
            raise ProvisionError(
                f"cannot reach Grafana at {self.url} to {what}: {e}; check --grafana-url "
                "(scheme, host, port, and sub-path if Grafana is served under one)"
            ) from e
        except ValueError as e:  # a body that is not JSON: something else answered
            raise ProvisionError(
                f"{self.url} answered the request to {what} with something that is not "
                "Grafana's JSON API; check --grafana-url"
            ) from e

    def check(self) -> str:
        """Grafana's version; fails unless the URL is Grafana and the credentials work."""
        health = self.call("read its health", lambda: self.api.client.GET("/health"))
        if not isinstance(health, dict) or "database" not in health:
            raise ProvisionError(
                f"{self.url}/api/health did not answer like Grafana ({str(health)[:80]!r}); "
                "check --grafana-url"
            )
        self.call("read the current organization", self.api.organization.get_current_organization)
        return str(health.get("version", "unknown"))

    def get(self, what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        return self.call(what, fn, missing_ok=True)
