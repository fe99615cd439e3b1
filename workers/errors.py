"""Errors the engine raises at its boundary; the router maps them to HTTP statuses."""

from __future__ import annotations


class EngineDeadError(RuntimeError):
    """The engine's step loop stopped on an error; the replica must be restarted (HTTP 503)."""


class AdapterNotFoundError(ValueError):
    """A request or unload names an adapter that is not registered (HTTP 404)."""


class AdapterLoadError(ValueError):
    """An adapter failed validation or could not be read (HTTP 400)."""
