from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_tiny_model


@pytest.fixture(scope="session")
def draft_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different, smaller random model with the target's vocabulary: low acceptance."""
    return make_tiny_model(tmp_path_factory.mktemp("draft") / "draft", seed=5, num_hidden_layers=1)
