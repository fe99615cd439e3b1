"""The adapter errors; workers.errors re-exports them for the engine's boundary."""

from __future__ import annotations


class AdapterNotFoundError(ValueError):
    """A request or unload names an adapter that is not registered (HTTP 404)."""


class AdapterLoadError(ValueError):
    """An adapter failed validation or could not be read (HTTP 400)."""
