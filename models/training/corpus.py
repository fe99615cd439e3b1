"""Stage 1: collect the four domains' documents and write them with their manifest.

Domains: `python` (stdlib code, the target's corpus, plus chat-formatted function requests),
`python-tests` (the stdlib test suite), `c-headers` (system C headers), `docstrings` (stdlib
docstrings as rst pages). Writes <work>/corpus/<domain>.jsonl; the manifest is written by
`manifest.write_manifest`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from models.training.chat_pairs import chat_document, function_requests
from models.training.docstrings import module_page, pydoc_topic_pages
from models.training.documents import (
    Document,
    TreeUse,
    cap_bytes,
    count_used,
    hash_percent,
    in_hash_order,
    read_tree,
    split_of,
    write_jsonl,
)
from models.training.settings import CorpusSettings
from models.training.sources import (
    c_header_trees,
    is_generated,
    is_prose_path,
    is_test_path,
    module_name,
    site_package_trees,
    stdlib_tree,
)

DOMAINS = ("python", "python-tests", "c-headers", "docstrings")


@dataclass
class Domain:
    name: str
    description: str
    documents: list[Document]
    trees: list[dict] = field(default_factory=list)


def python_domain(settings: CorpusSettings) -> Domain:
    def keep(rel: PurePosixPath) -> bool:
        return not is_test_path(rel) and not is_prose_path(rel)

    docs, use = read_tree(stdlib_tree(), ".py", keep, settings, skip_text=is_generated)
    docs = cap_bytes(docs, settings.python_max_bytes, settings.seed)
    return Domain(
        name="python",
        description="Python standard library source; test suite, pydoc_data and generated "
        "codec tables excluded",
        documents=docs,
        trees=count_used([use], docs),
    )


def chat_domain(python: Domain, settings: CorpusSettings) -> Domain:
    """Chat documents from the python domain's train files only, about chat_fraction of its
    bytes."""
    train = [d for d in python.documents if d.split == "train"]
    budget = settings.chat_fraction * sum(d.num_bytes for d in train)
    candidates = []
    for doc in train:
        for name, request, code in function_requests(doc.text, settings.chat_max_source_chars):
            candidates.append((f"{doc.source}#chat:{name}", chat_document(request, code)))
    candidates.sort(key=lambda c: hash_percent(settings.seed, "chat", c[0] + c[1]))
    docs, total = [], 0
    for source, text in candidates:
        if total >= budget:
            break
        docs.append(Document(source=source, split="train", text=text))
        total += docs[-1].num_bytes
    return Domain("chat", "function requests answered with stdlib functions (train files)", docs)


def python_tests_domain(settings: CorpusSettings) -> Domain:
    """The stdlib test suite; where a distribution strips it, test modules of installed
    packages fill up to adapter_min_bytes."""
    docs, use = read_tree(stdlib_tree(), ".py", is_test_path, settings)
    uses = [use]
    for tree in site_package_trees():
        if sum(d.num_bytes for d in docs) >= settings.adapter_min_bytes:
            break
        more, more_use = read_tree(tree, ".py", is_test_path, settings)
        docs += more
        uses.append(more_use)
    docs = cap_bytes(docs, settings.adapter_max_bytes, settings.seed)
    return Domain(
        "python-tests",
        "Python test modules (stdlib test suite first)",
        docs,
        count_used(uses, docs),
    )


def c_headers_domain(settings: CorpusSettings) -> Domain:
    docs: list[Document] = []
    uses: list[TreeUse] = []
    for tree in c_header_trees():
        if sum(d.num_bytes for d in docs) >= settings.adapter_max_bytes:
            break
        more, use = read_tree(tree, ".h", lambda rel: True, settings)
        docs += more
        uses.append(use)
    docs = cap_bytes(docs, settings.adapter_max_bytes, settings.seed)
    return Domain("c-headers", "C header files (/usr/include first)", docs, count_used(uses, docs))


def docstrings_domain(python: Domain, settings: CorpusSettings) -> Domain:
    """rst pages of the python domain's modules (same split as their file) plus the
    reference-manual topics of pydoc_data."""
    docs = []
    for doc in python.documents:
        name = module_name(PurePosixPath(doc.source.split("/", 1)[1]))
        page = module_page(name, doc.text)
        if page is not None:
            docs.append(Document(source=doc.source + "#docs", split=doc.split, text=page))
    stdlib = stdlib_tree()
    topics_file = stdlib.root / "pydoc_data" / "topics.py"
    use = TreeUse(label="stdlib", root=str(stdlib.root), exists=True)
    use.files_matched = len(python.documents)
    if topics_file.is_file():
        use.files_matched += 1
        for topic, page in pydoc_topic_pages(topics_file.read_text(encoding="utf-8")).items():
            key = f"{stdlib.key(topics_file)}#{topic}"
            docs.append(Document(source=key, split=split_of(key, settings), text=page))
    docs = cap_bytes(docs, settings.adapter_max_bytes, settings.seed)
    return Domain(
        "docstrings",
        "stdlib docstrings as rst pages, plus pydoc_data reference topics",
        docs,
        count_used([use], docs),
    )


def build_corpus(settings: CorpusSettings) -> list[Domain]:
    python = python_domain(settings)
    return [
        python,
        chat_domain(python, settings),
        python_tests_domain(settings),
        c_headers_domain(settings),
        docstrings_domain(python, settings),
    ]


def write_corpus(domains: list[Domain], work: Path) -> None:
    for domain in domains:
        write_jsonl(work / "corpus" / f"{domain.name}.jsonl", in_hash_order(domain.documents, 0))
