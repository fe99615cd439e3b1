"""Stage 2b: encode every (domain, split) into a token stream under <work>/tokens.

The python train stream interleaves the stdlib files with the chat documents (hash order), so
the chat format is spread through training instead of arriving in one block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from models.training.corpus import DOMAINS
from models.training.data import encode_stream
from models.training.documents import SPLITS, Document, in_hash_order, read_jsonl


def stream_path(work: Path, domain: str, split: str) -> Path:
    return work / "tokens" / f"{domain}.{split}.npy"


def encode_all(work: Path, tokenizer_file: Path, seed: int) -> dict[str, dict[str, int]]:
    """Write the streams; return {domain: {split: num_tokens}}."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    corpus = {name: read_jsonl(work / "corpus" / f"{name}.jsonl") for name in (*DOMAINS, "chat")}
    counts: dict[str, dict[str, int]] = {}
    for domain in DOMAINS:
        counts[domain] = {}
        for split in SPLITS:
            docs: list[Document] = [d for d in corpus[domain] if d.split == split]
            if domain == "python" and split == "train":
                docs = in_hash_order(docs + corpus["chat"], seed)
            stream = encode_stream(tokenizer, [d.text for d in docs])
            path = stream_path(work, domain, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, stream)
            counts[domain][split] = int(stream.size)
    return counts


def load_stream(work: Path, domain: str, split: str, device: torch.device) -> torch.Tensor:
    """[num_tokens] int64 on device."""
    array = np.load(stream_path(work, domain, split))
    return torch.from_numpy(array.astype(np.int64)).to(device)
