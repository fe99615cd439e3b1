"""`model` in a request -> the adapter to use (None for the base model).

Accepted: the base model's name, an adapter's name (vLLM style) or `base:adapter` (Ray Serve
LLM style). Anything else is a 404 in the OpenAI shape.
"""

from __future__ import annotations

from collections.abc import Container

from router.errors import not_found


def resolve_adapter(model: str, base_model: str, adapters: Container[str]) -> str | None:
    if model == base_model:
        return None
    base, sep, adapter = model.partition(":")
    if sep and base == base_model and adapter in adapters:
        return adapter
    if not sep and model in adapters:
        return model
    raise not_found(
        f"the model {model!r} does not exist; GET /v1/models lists the base model and "
        "the loaded adapters",
        "model",
    )


def model_list(base_model: str, adapters: list[str], created: int) -> dict:
    """The body of GET /v1/models."""
    entries = [_entry(base_model, created, None, base_model)]
    entries += [_entry(name, created, base_model, base_model) for name in adapters]
    return {"object": "list", "data": entries}


def _entry(name: str, created: int, parent: str | None, root: str) -> dict:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "tandem",
        "root": root,
        "parent": parent,
    }
