"""Confine adapter sources to configured roots: no `..`, no absolute path outside a root, no
symlink that escapes one."""

from __future__ import annotations

from pathlib import Path

from adapters.errors import AdapterLoadError


def resolve_adapter_dir(path: str, roots: tuple[str, ...]) -> Path:
    """The real directory `path` names, if it lies inside one of `roots`.

    A relative path is looked up under each root in turn. Raises AdapterLoadError otherwise.
    """
    if not roots:
        raise AdapterLoadError(
            "loading adapters is disabled: configure adapter_roots with the directories "
            "adapters may be read from"
        )
    if not path or "\x00" in path:
        raise AdapterLoadError("lora_path is empty or malformed")
    if ".." in Path(path).parts:
        raise AdapterLoadError(f"lora_path {path!r} may not contain '..'")
    real_roots = [Path(r).resolve() for r in roots]
    candidates = [Path(path)] if Path(path).is_absolute() else [r / path for r in real_roots]
    for candidate in candidates:
        real = candidate.resolve()
        if not any(real.is_relative_to(root) for root in real_roots):
            continue
        if real.is_dir():
            return real
    raise AdapterLoadError(
        f"lora_path {path!r} is not a directory inside the adapter roots this server allows "
        "(adapters.roots in its config); give a path relative to one of them"
    )


def confined_file(directory: Path, name: str, roots: tuple[str, ...]) -> Path:
    """directory/name, refusing a symlinked file that points outside the roots."""
    real = (directory / name).resolve()
    if not any(real.is_relative_to(Path(r).resolve()) for r in roots):
        raise AdapterLoadError(f"the adapter's {name} points outside the adapter roots")
    if not real.is_file():
        raise AdapterLoadError(
            f"the adapter directory has no {name}; is it a PEFT LoRA adapter directory?"
        )
    return real
