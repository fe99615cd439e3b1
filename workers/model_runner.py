"""ModelRunner: turns a SchedulerOutput into one forward pass over the paged KV cache and
picks the next token of every sequence that samples."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adapters.manager import LoRAManager
from adapters.ops import LoRABatch
from workers.attention.metadata import AttentionMetadata
from workers.models.llama import LlamaForCausalLM
from workers.protocol import TokenLogprob
from workers.sampler import apply_penalties, mask_tokens, sample_row, top_logprobs
from workers.scheduler_output import ModelRunnerOutput, ScheduledSeq, SchedulerOutput
from workers.stop_checker import stop_token_ids


@dataclass(frozen=True)
class StepInputs:
    input_ids: torch.Tensor
    positions: torch.Tensor
    meta: AttentionMetadata
    logits_indices: torch.Tensor
    lora: LoRABatch | None


class ModelRunner:
    """Owns the KV cache tensors: per layer [2, num_blocks, block_size, kv_heads, head_dim]."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device,
        seed: int = 0,
        adapters: LoRAManager | None = None,
    ) -> None:
        cfg = model.config
        self.model = model
        self.adapters = adapters
        self.block_size = block_size
        self.device = device
        self.eos_token_ids = cfg.eos_token_ids
        shape = (2, num_blocks, block_size, cfg.num_key_value_heads, cfg.head_dim)
        self.kv_caches = [
            torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)
        ]
        # Draws of requests without a seed: reproducible for a given engine seed and load.
        self.generator = torch.Generator().manual_seed(seed)

    @torch.inference_mode()
    def execute(self, step: SchedulerOutput) -> ModelRunnerOutput:
        self._copy_blocks(step.block_copies)
        if step.empty:
            return ModelRunnerOutput({}, {})
        inputs = self._prepare(step.seqs)
        hidden = self.model(
            inputs.input_ids, inputs.positions, self.kv_caches, inputs.meta, inputs.lora
        )
        logits = self.model.compute_logits(hidden[inputs.logits_indices]).cpu()
        return self._pick(tuple(s for s in step.seqs if s.sample), logits)

    def _copy_blocks(self, copies: tuple[tuple[int, int], ...]) -> None:
        if not copies:
            return
        src = torch.tensor([c[0] for c in copies], device=self.device)
        dst = torch.tensor([c[1] for c in copies], device=self.device)
        for cache in self.kv_caches:
            cache[:, dst] = cache[:, src]

    def _prepare(self, seqs: tuple[ScheduledSeq, ...]) -> StepInputs:
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        query_start_loc = [0]
        seq_lens: list[int] = []
        logits_indices: list[int] = []
        bs = self.block_size
        for s in seqs:
            input_ids += s.token_ids
            span = range(s.start_pos, s.start_pos + s.num_tokens)
            positions += span
            slots += [s.block_table[p // bs] * bs + p % bs for p in span]
            query_start_loc.append(len(input_ids))
            seq_lens.append(span.stop)
            if s.sample:
                logits_indices.append(len(input_ids) - 1)
        width = max(len(s.block_table) for s in seqs)
        tables = [list(s.block_table) + [0] * (width - len(s.block_table)) for s in seqs]

        def tensor(values: list[int] | list[list[int]]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=self.device)

        meta = AttentionMetadata(
            slot_mapping=tensor(slots),
            block_tables=tensor(tables),
            query_start_loc=tuple(query_start_loc),
            seq_lens=tuple(seq_lens),
            block_size=bs,
        )
        return StepInputs(
            tensor(input_ids), tensor(positions), meta, tensor(logits_indices), self._lora(seqs)
        )

    def _lora(self, seqs: tuple[ScheduledSeq, ...]) -> LoRABatch | None:
        """Per-token adapter slots of the step, activating the step's adapters on device."""
        keys = {s.adapter_key for s in seqs if s.adapter_key is not None}
        if not keys:
            return None
        assert self.adapters is not None
        slot_of = self.adapters.activate(keys)
        token_slots: list[int] = []
        for s in seqs:
            slot = -1 if s.adapter_key is None else slot_of[s.adapter_key]
            token_slots += [slot] * s.num_tokens
        return LoRABatch.build(self.adapters.slots, token_slots)

    def _pick(self, seqs: tuple[ScheduledSeq, ...], logits: torch.Tensor) -> ModelRunnerOutput:
        logprobs = torch.log_softmax(logits, dim=-1)
        sampled: dict[int, TokenLogprob] = {}
        beams: dict[int, tuple[tuple[int, float], ...]] = {}
        for row, s in enumerate(seqs):
            if s.beam_topk:
                beams[s.seq_id] = self._beam_candidates(s, logprobs[row])
                continue
            token = sample_row(
                self._process(s, logits[row]), s.sampling, s.generator or self.generator
            )
            top = top_logprobs(logprobs[row], s.sampling.logprobs or 0)
            sampled[s.seq_id] = TokenLogprob(token, float(logprobs[row, token]), top)
        return ModelRunnerOutput(sampled, beams)

    def _process(self, s: ScheduledSeq, row: torch.Tensor) -> torch.Tensor:
        """Penalties, then stop tokens held back until min_tokens outputs exist."""
        params = s.sampling
        if params.has_penalties:
            row = apply_penalties(row, params, s.prompt_token_ids, s.output_token_ids)
        if len(s.output_token_ids) < params.min_tokens:
            row = mask_tokens(row, sorted(stop_token_ids(params, self.eos_token_ids)))
        return row

    def _beam_candidates(
        self, s: ScheduledSeq, logprobs: torch.Tensor
    ) -> tuple[tuple[int, float], ...]:
        # As transformers does for beams: processors act on log-probabilities.
        return top_logprobs(self._process(s, logprobs), s.beam_topk)
