"""to_device lives in adapters.host_copy (adapters/ never imports workers/); re-exported."""

from adapters.host_copy import to_device

__all__ = ["to_device"]
