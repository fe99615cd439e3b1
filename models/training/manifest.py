"""What the corpus was, exactly: the manifest, the file list, and the shipped test texts.

- corpus_manifest.json: per domain, the trees read, file and byte counts per split, and a
  sha256 over (source, sha256(text)) of every document, so a rebuild can prove it read the
  same bytes.
- corpus_files.json.gz: every document's source, byte count and split.
- heldout/<domain>.json.gz: the first test-split documents (hash order) up to
  shipped_test_bytes, the text that evaluate.py measures on any machine.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import platform
import sys
from pathlib import Path

from models.training.corpus import DOMAINS, Domain
from models.training.documents import SPLITS, Document, in_hash_order
from models.training.settings import CorpusSettings


def corpus_digest(docs: list[Document]) -> str:
    digest = hashlib.sha256()
    for doc in sorted(docs, key=lambda d: d.source):
        digest.update(doc.source.encode() + b"\0")
        digest.update(hashlib.sha256(doc.text.encode("utf-8")).digest())
    return digest.hexdigest()


def _split_counts(docs: list[Document]) -> dict[str, dict[str, int]]:
    return {
        split: {
            "documents": sum(1 for d in docs if d.split == split),
            "bytes": sum(d.num_bytes for d in docs if d.split == split),
        }
        for split in SPLITS
    }


def write_manifest(domains: list[Domain], settings: CorpusSettings, out: Path) -> dict:
    manifest = {
        "built_with": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "machine": platform.machine(),
        },
        "settings": settings.__dict__,
        "file_list": "corpus_files.json.gz",
        "domains": {
            d.name: {
                "description": d.description,
                "trees": d.trees,
                "splits": _split_counts(d.documents),
                "sha256": corpus_digest(d.documents),
            }
            for d in domains
        },
    }
    (out / "corpus_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    files = {
        d.name: [[doc.source, doc.num_bytes, doc.split] for doc in d.documents] for d in domains
    }
    write_json_gz(out / "corpus_files.json.gz", files)
    return manifest


def head_of(text: str, max_bytes: int) -> str:
    """The text's first max_bytes (UTF-8), cut back to a line end."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    cut = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    return cut[: cut.rfind("\n") + 1]


def shipped_test_documents(docs: list[Document], settings: CorpusSettings) -> list[Document]:
    """The head (shipped_doc_bytes) of each test document, in hash order, until
    shipped_test_bytes: many files rather than one long one."""
    kept, total = [], 0
    for doc in in_hash_order((d for d in docs if d.split == "test"), settings.seed):
        room = min(settings.shipped_doc_bytes, settings.shipped_test_bytes - total)
        if room < settings.shipped_doc_bytes // 4:
            break
        text = head_of(doc.text, room)
        if len(text.strip()) >= settings.min_file_chars:
            kept.append(Document(source=doc.source, split="test", text=text))
            total += kept[-1].num_bytes
    return kept


def write_shipped_test_sets(domains: list[Domain], settings: CorpusSettings, out: Path) -> None:
    (out / "heldout").mkdir(parents=True, exist_ok=True)
    for domain in domains:
        if domain.name not in DOMAINS:
            continue
        docs = shipped_test_documents(domain.documents, settings)
        payload = {
            "domain": domain.name,
            "documents": [{"source": d.source, "text": d.text} for d in docs],
        }
        write_json_gz(out / "heldout" / f"{domain.name}.json.gz", payload)


def write_json_gz(path: Path, payload: object) -> None:
    # mtime=0 keeps the archive byte-identical across rebuilds of the same content.
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def read_json_gz(path: Path) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)
