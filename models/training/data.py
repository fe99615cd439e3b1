"""Token streams and the windows cut from them.

Every document is encoded as [BOS] + tokens + [EOS] and the documents are concatenated into one
stream per (domain, split). Training samples random windows of the stream; evaluation uses
consecutive non-overlapping windows from its start, so it is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from models.training.tokenizer_spec import BOS_TOKEN, EOS_TOKEN


def encode_stream(tokenizer: Tokenizer, texts: Sequence[str]) -> np.ndarray:
    """[num_tokens] uint16: each text as BOS + tokens + EOS, concatenated."""
    bos, eos = tokenizer.token_to_id(BOS_TOKEN), tokenizer.token_to_id(EOS_TOKEN)
    assert tokenizer.get_vocab_size() <= np.iinfo(np.uint16).max
    pieces = []
    for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        pieces.append(np.asarray([bos, *encoding.ids, eos], dtype=np.uint16))
    if not pieces:
        return np.zeros(0, dtype=np.uint16)
    return np.concatenate(pieces)


class WindowSampler:
    """Random [batch_size, seq_len] windows of a token stream, seeded."""

    def __init__(self, stream: torch.Tensor, seq_len: int, batch_size: int, seed: int) -> None:
        if stream.numel() < seq_len + 1:
            raise ValueError(
                f"stream of {stream.numel()} tokens is shorter than one window of {seq_len}; "
                "lower seq_len or add data"
            )
        self.stream = stream
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._positions = torch.arange(seq_len)

    def next_batch(self) -> torch.Tensor:
        last_start = self.stream.numel() - self.seq_len
        starts = torch.randint(0, last_start + 1, (self.batch_size,), generator=self.generator)
        index = (starts[:, None] + self._positions[None, :]).to(self.stream.device)
        return self.stream[index]


def eval_windows(stream: torch.Tensor, seq_len: int, max_windows: int) -> torch.Tensor:
    """[n, seq_len]: consecutive windows from the stream's start (n <= max_windows)."""
    n = min(max_windows, stream.numel() // seq_len)
    if n == 0:
        raise ValueError(f"need at least {seq_len} tokens for one evaluation window")
    return stream[: n * seq_len].view(n, seq_len)


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting ids[:, 1:] from logits[:, :-1]; logits [B, T, V]."""
    vocab = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), ids[:, 1:].reshape(-1).long())


@torch.no_grad()
def mean_loss(
    logits_of: Callable[[torch.Tensor], torch.Tensor], windows: torch.Tensor, batch_size: int
) -> float:
    """Token-weighted mean next-token loss over all windows, `batch_size` windows at a time."""
    total, count = 0.0, 0
    for start in range(0, windows.shape[0], batch_size):
        batch = windows[start : start + batch_size]
        tokens = batch.shape[0] * (batch.shape[1] - 1)
        total += next_token_loss(logits_of(batch), batch).item() * tokens
        count += tokens
    return total / count
