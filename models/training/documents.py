"""Documents, the file-level train / valid / test split, and reading a source tree.

A document is one file's text (or one page derived from a file). Its split depends only on
its name and the seed, so the same file lands in the same split on every machine and run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from models.training.settings import CorpusSettings
from models.training.sources import SourceTree

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Document:
    source: str
    split: str
    text: str

    @property
    def num_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


@dataclass
class TreeUse:
    """What one source tree contributed, for the manifest."""

    label: str
    root: str
    exists: bool
    files_matched: int = 0
    files_used: int = 0
    skipped_too_large: int = 0
    skipped_not_utf8: int = 0
    skipped_nearly_empty: int = 0
    skipped_generated: int = 0
    bytes_used: int = 0


def hash_percent(seed: int, purpose: str, key: str) -> float:
    """A stable pseudo-random number in [0, 100) for (seed, purpose, key)."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def split_of(key: str, settings: CorpusSettings) -> str:
    value = hash_percent(settings.seed, "split", key)
    if value < settings.test_percent:
        return "test"
    if value < settings.test_percent + settings.valid_percent:
        return "valid"
    return "train"


def in_hash_order(docs: Iterable[Document], seed: int) -> list[Document]:
    return sorted(docs, key=lambda d: hash_percent(seed, "order", d.source))


def cap_bytes(docs: Iterable[Document], max_bytes: int, seed: int) -> list[Document]:
    """Whole documents, in hash order, while the total stays within max_bytes."""
    kept, total = [], 0
    for doc in in_hash_order(docs, seed):
        if total + doc.num_bytes > max_bytes:
            continue
        kept.append(doc)
        total += doc.num_bytes
    return kept


def read_tree(
    tree: SourceTree,
    suffix: str,
    keep: Callable[[PurePosixPath], bool],
    settings: CorpusSettings,
    skip_text: Callable[[str], bool] = lambda text: False,
) -> tuple[list[Document], TreeUse]:
    """Documents for the files of `tree` whose relative path passes `keep` and whose text
    does not match `skip_text`."""
    use = TreeUse(label=tree.label, root=str(tree.root), exists=tree.root.is_dir())
    docs = []
    for path in tree.files(suffix):
        if not keep(PurePosixPath(path.relative_to(tree.root).as_posix())):
            continue
        use.files_matched += 1
        if path.stat().st_size > settings.max_file_bytes:
            use.skipped_too_large += 1
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            use.skipped_not_utf8 += 1
            continue
        if len(text.strip()) < settings.min_file_chars:
            use.skipped_nearly_empty += 1
            continue
        if skip_text(text):
            use.skipped_generated += 1
            continue
        key = tree.key(path)
        docs.append(Document(source=key, split=split_of(key, settings), text=text))
    return docs, use


def count_used(uses: list[TreeUse], kept: list[Document]) -> list[dict]:
    """The manifest rows of the trees, counting only the documents that survived the caps."""
    for use in uses:
        mine = [d for d in kept if d.source.startswith(use.label + "/")]
        use.files_used = len(mine)
        use.bytes_used = sum(d.num_bytes for d in mine)
    return [asdict(u) for u in uses]


def write_jsonl(path: Path, docs: list[Document]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(asdict(doc), ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[Document]:
    with path.open(encoding="utf-8") as f:
        return [Document(**json.loads(line)) for line in f]
