"""RunningDecodes: the running sequences that decode one token greedily in a step, sent to
the model runner as columns rather than one ScheduledSeq each (issue 18).

Each is a sequence the runner already holds (its history and block table), computing its
last token at `position` and sampling the next one by bare argmax (no penalties, bias,
grammar, held-back stop tokens, logprobs, prompt logprobs, beams or drafts). Its block
table changed only where `blocks` says so; every other one is as the runner has it.
The runner lays them out after the step's ScheduledSeqs, one logits row each, and returns
their tokens as one column too (ModelRunnerOutput.decoded): no TokenLogprob each, since
none of them asks for logprobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from workers.kv_cache.table_changes import BlockUpdate

# In ModelRunnerOutput.decoded: the column's request failed, it sampled nothing (never a
# valid token id).
NO_TOKEN = -1


@dataclass(frozen=True)
class RunningDecodes:
    """Column i is one sequence: its id, its request's, the token it computes (PLACEHOLDER
    while a step in flight samples it) at `position`; adapter_keys: each one's adapter
    (None: no sequence here runs one); blocks: (seq_id, update) of the tables that changed
    since the runner got them."""

    seq_ids: tuple[int, ...]
    request_ids: tuple[str, ...]
    token_ids: tuple[int, ...]
    positions: tuple[int, ...]
    adapter_keys: tuple[str | None, ...] | None = None
    blocks: tuple[tuple[int, BlockUpdate], ...] = ()

    def __post_init__(self) -> None:
        n = len(self.seq_ids)
        lengths = {len(self.request_ids), len(self.token_ids), len(self.positions)}
        if self.adapter_keys is not None:
            lengths.add(len(self.adapter_keys))
        if lengths != {n}:
            raise ValueError("RunningDecodes columns differ in length")

    def __len__(self) -> int:
        return len(self.seq_ids)

    @cached_property
    def index(self) -> dict[int, int]:
        """seq_id -> column."""
        return dict(zip(self.seq_ids, range(len(self.seq_ids)), strict=True))

    def adapters(self) -> list[str | None]:
        keys = self.adapter_keys
        return [None] * len(self.seq_ids) if keys is None else list(keys)

    def select(self, columns: list[int]) -> RunningDecodes:
        """The given columns alone (their block updates with them)."""
        ids = tuple(self.seq_ids[i] for i in columns)
        keep = set(ids)
        keys = self.adapter_keys
        return RunningDecodes(
            seq_ids=ids,
            request_ids=tuple(self.request_ids[i] for i in columns),
            token_ids=tuple(self.token_ids[i] for i in columns),
            positions=tuple(self.positions[i] for i in columns),
            adapter_keys=None if keys is None else tuple(keys[i] for i in columns),
            blocks=tuple((s, u) for s, u in self.blocks if s in keep),
        )


class DecodeColumns:
    """Builds a step's RunningDecodes column by column (the scheduler's side)."""

    def __init__(self) -> None:
        self.seq_ids: list[int] = []
        self.request_ids: list[str] = []
        self.token_ids: list[int] = []
        self.positions: list[int] = []
        self.adapter_keys: list[str | None] = []
        self.any_adapter = False
        self.blocks: list[tuple[int, BlockUpdate]] = []

    def add(
        self,
        seq_id: int,
        request_id: str,
        token_id: int,
        position: int,
        adapter_key: str | None,
        update: BlockUpdate | None,
    ) -> None:
        self.seq_ids.append(seq_id)
        self.request_ids.append(request_id)
        self.token_ids.append(token_id)
        self.positions.append(position)
        self.adapter_keys.append(adapter_key)
        if adapter_key is not None:
            self.any_adapter = True
        if update is not None:
            self.blocks.append((seq_id, update))

    def build(self) -> RunningDecodes | None:
        """The columns, or None if there are none."""
        if not self.seq_ids:
            return None
        return RunningDecodes(
            seq_ids=tuple(self.seq_ids),
            request_ids=tuple(self.request_ids),
            token_ids=tuple(self.token_ids),
            positions=tuple(self.positions),
            adapter_keys=tuple(self.adapter_keys) if self.any_adapter else None,
            blocks=tuple(self.blocks),
        )
