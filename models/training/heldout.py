"""The shipped held-out texts (models/heldout/<domain>.json.gz) as evaluation windows.

These are test-split documents of the training machine's corpus, so evaluation gives the same
numbers on any machine, whatever its own standard library or headers look like.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from models.training.data import encode_stream, eval_windows
from models.training.manifest import read_json_gz


@dataclass(frozen=True)
class HeldOut:
    domain: str
    documents: list[dict[str, str]]
    stream: torch.Tensor  # [num_tokens] int64

    def windows(self, seq_len: int, max_windows: int) -> torch.Tensor:
        """[n, seq_len] from the stream's start; one shorter window if the text is short (only
        the smoke build ships that little)."""
        return eval_windows(self.stream, min(seq_len, self.stream.numel()), max_windows)

    def prompts(self, count: int, prompt_len: int) -> list[torch.Tensor]:
        """`count` prompts of prompt_len tokens, from evenly spaced points of the stream."""
        stride = (self.stream.numel() - prompt_len) // count
        return [self.stream[i * stride : i * stride + prompt_len] for i in range(count)]


def load_heldout(models_dir: Path, domain: str, tokenizer_file: Path) -> HeldOut:
    payload = read_json_gz(models_dir / "heldout" / f"{domain}.json.gz")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    stream = encode_stream(tokenizer, [d["text"] for d in payload["documents"]])
    return HeldOut(domain, payload["documents"], torch.from_numpy(stream.astype("int64")))
