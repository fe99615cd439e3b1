"""Cut the test fixtures (tests/fixtures/models/<domain>.txt) from the shipped held-out texts.

`python -m models.training.fixtures`: one snippet per domain, from a test-split document, so
the tests measure the models on text they never trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.training.manifest import read_json_gz
from models.training.settings import full_settings

SNIPPET_CHARS = 1500


def snippet(text: str, max_chars: int) -> str:
    """The text's first max_chars, cut back to the last line end."""
    cut = text[:max_chars]
    return cut[: cut.rfind("\n") + 1] if "\n" in cut else cut


def write_fixtures(models_dir: Path, fixtures_dir: Path) -> dict[str, str]:
    settings = full_settings()
    fixtures_dir.mkdir(parents=True, exist_ok=True)
    sources = {}
    for domain in ("python", *(a.domain for a in settings.adapters)):
        documents = read_json_gz(models_dir / "heldout" / f"{domain}.json.gz")["documents"]
        doc = max(documents[:4], key=lambda d: len(d["text"]))
        (fixtures_dir / f"{domain}.txt").write_text(snippet(doc["text"], SNIPPET_CHARS))
        sources[domain] = doc["source"]
    (fixtures_dir / "sources.json").write_text(json.dumps(sources, indent=2) + "\n")
    return sources


def main(argv: list[str] | None = None) -> None:
    root = Path(__file__).parents[2]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=root / "models")
    parser.add_argument("--out", type=Path, default=root / "tests" / "fixtures" / "models")
    args = parser.parse_args(argv)
    print(json.dumps(write_fixtures(args.models, args.out), indent=2))


if __name__ == "__main__":
    main()
