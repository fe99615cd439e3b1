"""ModelRunner: turns a SchedulerOutput into one forward pass over the paged KV cache and
picks the next token of every sequence that samples."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import torch

from adapters.manager import LoRAManager
from adapters.ops import LoRABatch
from workers.attention.metadata import AttentionMetadata
from workers.cuda_graphs import StepGraphs
from workers.host_copy import array_to_device, to_device
from workers.input_batch import InputBatch
from workers.mixed_rows import mixed_rows
from workers.models.llama import LlamaForCausalLM
from workers.protocol import TokenLogprob
from workers.request_failure import NON_FINITE, RequestFailure, failure_from_exception
from workers.running_decodes import NO_TOKEN, RunningDecodes
from workers.sampler import top_logprobs
from workers.sampler_beams import beam_candidates
from workers.scheduler_output import (
    ModelRunnerOutput,
    ScheduledSeq,
    SchedulerOutput,
    plain_greedy,
)
from workers.sequence import PLACEHOLDER
from workers.spec.verify import accept_greedy
from workers.step_arrays import gather, graph_rows, layout
from workers.step_sampling import PendingSeq, sample_seqs
from workers.stop_checker import stop_token_ids
from workers.structured.decoding import StructuredDecoding


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
        graph_batch: int = 0,
        max_model_len: int = 0,
        graph_tokens: int = 1,
        mixed_tokens: int = 0,
    ) -> None:
        """graph_batch > 0 (CUDA only) captures decode steps of up to that many sequences as
        CUDA graphs, and steps of up to graph_tokens tokens per sequence for small batches
        (speculative verification); block `num_blocks` is then a scratch block for padding.
        mixed_tokens > 0 (with graph_batch) also captures steps with prefill chunks of up to
        that many tokens (MixedGraphs)."""
        cfg = model.config
        self.model = model
        self.adapters = adapters
        self.block_size = block_size
        self.device = device
        self.eos_token_ids = cfg.eos_token_ids
        use_graphs = graph_batch > 0 and device.type == "cuda"
        shape = (2, num_blocks + use_graphs, block_size, cfg.num_key_value_heads, cfg.head_dim)
        self.kv_caches = [
            torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)
        ]
        # Draws of requests without a seed: reproducible for a given engine seed and load.
        self.generator = torch.Generator().manual_seed(seed)
        self.graphs = (
            StepGraphs(
                model,
                self.kv_caches,
                graph_batch,
                -(-max_model_len // block_size),
                num_blocks,
                block_size,
                adapters.slots if adapters is not None else None,
                graph_tokens,
                mixed_tokens,
            )
            if use_graphs
            else None
        )
        # The last greedy step's ids on the device and each sequence's row in them.
        self._sampled: tuple[torch.Tensor, dict[int, int]] | None = None
        # Grammar matchers of constrained requests (set by the engine; None: none served).
        self.structured: StructuredDecoding | None = None
        # Every live sequence's block table and token history, updated from step differences.
        self.batch = InputBatch()

    def execute(self, step: SchedulerOutput) -> ModelRunnerOutput:
        return self.launch(step).result()

    def forget(self, seq_ids: Iterable[int]) -> None:
        """Drop the batch rows of sequences that are gone (callers of forward_logits)."""
        self.batch.remove(seq_ids)

    @torch.inference_mode()
    def launch(self, step: SchedulerOutput) -> PendingOutput:
        """Queue the step on the device, after applying its differences to the batch. The
        tokens it samples join the batch's histories when result() gives them, so in the
        order the caller takes the steps' results (with async scheduling, a step launched
        ahead may have its output at once, before the step in flight before it)."""
        self.copy_blocks(step.block_copies)
        self.batch.remove(step.freed_seq_ids)
        self.batch.update(step.seqs)
        if step.decodes is not None:
            self.batch.update_blocks(step.decodes.blocks)
        step = self._with_histories(step)
        pending = self._launch(step)
        return replace(pending, on_result=_recorder(self.batch, step))

    def _with_histories(self, step: SchedulerOutput) -> SchedulerOutput:
        """The step with the token histories penalties need, from the batch."""
        if not any(s.sample and s.sampling.has_penalties for s in step.seqs):
            return step
        seqs = []
        for s in step.seqs:
            if s.sample and s.sampling.has_penalties and s.blocks is not None:
                prompt, outputs = self.batch.prompt_and_outputs(s.seq_id)
                s = replace(s, prompt_token_ids=prompt, output_token_ids=outputs)
            seqs.append(s)
        return replace(step, seqs=tuple(seqs))

    def _launch(self, step: SchedulerOutput) -> PendingOutput:
        """Greedy steps pick their tokens on the device and return before the device is
        done (result() waits), so the host can prepare the next step; a sequence of that
        next step may then hold a PLACEHOLDER for the token this step samples, which the
        device fills in."""
        if step.empty:
            return PendingOutput(ready=ModelRunnerOutput({}, {}))
        decodes = step.decodes
        logits = self._forward(step.seqs, decodes)
        with_rows = tuple(s for s in step.seqs if s.num_logit_rows)
        plain = all(
            plain_greedy(s) and not s.sampling.logprobs and not s.num_prompt_rows for s in with_rows
        )
        if plain:
            return self._greedy_on_device(with_rows, logits, decodes)
        self._sampled = None
        if self.structured is not None:  # host work while the device runs the forward
            self.structured.prepare(tuple(s for s in with_rows if s.sample))
        return PendingOutput(ready=self._pick(with_rows, logits.float().cpu(), decodes))

    @torch.inference_mode()
    def forward_logits(self, seqs: tuple[ScheduledSeq, ...]) -> torch.Tensor:
        """One forward over the block tables: float32 logits of every row a sequence asks
        for (its prompt rows, then its sample rows), on the device, [sum of num_logit_rows,
        vocab]. The sequences' differences are applied to the batch first."""
        self.batch.update(seqs)
        return self._forward(seqs)

    def _forward(
        self, seqs: tuple[ScheduledSeq, ...], decodes: RunningDecodes | None = None
    ) -> torch.Tensor:
        """Logits of the sample rows of `seqs`, then one row per column of `decodes`."""
        width = max((s.num_tokens for s in seqs), default=1)
        if self._graph_ready(seqs, decodes, width):
            assert self.graphs is not None
            graphs = self.graphs
            num_seqs = len(seqs) + (len(decodes) if decodes is not None else 0)
            fill = self._placeholders(seqs, decodes, np.arange(num_seqs))
            scratch = graphs.scratch_block * self.block_size
            slots = self._adapter_slots(seqs, decodes)
            rows = graph_rows(
                self.batch, seqs, width, self.block_size, scratch, slots, decodes=decodes
            )
            return graphs.run(rows, width, fill)
        if self._mixed_ready(seqs, decodes):
            assert self.graphs is not None and self.graphs.mixed is not None
            slots = self._adapter_slots(seqs, decodes)
            mixed = mixed_rows(self.batch, seqs, self.block_size, slots, decodes)
            fill = self._placeholders(seqs, decodes, mixed.arrays.query_start_loc[1:] - 1)
            return self.graphs.mixed.run(mixed, fill)
        inputs, query_start = self._prepare(seqs, decodes)
        fill = self._placeholders(seqs, decodes, query_start[1:] - 1)
        if fill is not None:
            inputs.input_ids.index_copy_(0, *fill)
        hidden = self.model(
            inputs.input_ids, inputs.positions, self.kv_caches, inputs.meta, inputs.lora
        )
        return self.model.compute_logits(hidden[inputs.logits_indices])

    def _placeholders(
        self,
        seqs: tuple[ScheduledSeq, ...],
        decodes: RunningDecodes | None,
        last_rows: np.ndarray,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(index, token ids) on the device for sequences whose last token is still being
        sampled by the previous step: index is the sequence's row in last_rows (`seqs`, then
        the columns of `decodes`)."""
        pending = [i for i, s in enumerate(seqs) if s.token_ids[-1] == PLACEHOLDER]
        pending_ids = [seqs[i].seq_id for i in pending]
        if decodes is not None:
            tokens = np.array(decodes.token_ids, dtype=np.int64)
            columns = np.flatnonzero(tokens == PLACEHOLDER)
            if len(columns):
                pending += (columns + len(seqs)).tolist()
                ids = decodes.seq_ids
                pending_ids += [ids[j] for j in columns.tolist()]
        if not pending:
            return None
        assert self._sampled is not None, "a placeholder without a greedy step before it"
        sampled, row_of = self._sampled
        index = to_device(
            [last_rows[pending].tolist(), list(map(row_of.__getitem__, pending_ids))],
            self.device,
        )
        return index[0], sampled[index[1]]

    def _graph_ready(
        self, seqs: tuple[ScheduledSeq, ...], decodes: RunningDecodes | None, width: int
    ) -> bool:
        """Sampling steps within the captured shapes (adapters only with LoRA slots)."""
        graphs = self.graphs
        if graphs is None or any(s.num_prompt_rows or not s.sample for s in seqs):
            return False
        num_seqs = len(seqs) + (len(decodes) if decodes is not None else 0)
        if not graphs.fits(width, num_seqs):
            return False
        return graphs.lora_slots is not None or not any(_step_adapters(seqs, decodes))

    def _mixed_ready(self, seqs: tuple[ScheduledSeq, ...], decodes: RunningDecodes | None) -> bool:
        """Steps with at most one sample row per sequence and no prompt-logprob rows within
        the mixed shapes (adapters only with LoRA slots)."""
        mixed = self.graphs.mixed if self.graphs is not None else None
        if mixed is None or any(s.num_prompt_rows or s.num_sample_rows > 1 for s in seqs):
            return False
        num_decodes = len(decodes) if decodes is not None else 0
        num_tokens = sum(s.num_tokens for s in seqs) + num_decodes
        if not mixed.fits(num_tokens, len(seqs) + num_decodes):
            return False
        return mixed.lora_slots is not None or not any(_step_adapters(seqs, decodes))

    def _adapter_slots(
        self, seqs: tuple[ScheduledSeq, ...], decodes: RunningDecodes | None = None
    ) -> list[int] | None:
        """Each sequence's LoRA slot (-1: base), activating the step's adapters."""
        adapters = _step_adapters(seqs, decodes)
        keys = {key for key in adapters if key is not None}
        if not keys:
            return None
        assert self.adapters is not None
        slot_of = self.adapters.activate(keys)
        return [-1 if key is None else slot_of[key] for key in adapters]

    def copy_blocks(self, copies: tuple[tuple[int, int], ...]) -> None:
        if not copies:
            return
        src = to_device([c[0] for c in copies], self.device)
        dst = to_device([c[1] for c in copies], self.device)
        for cache in self.kv_caches:
            cache[:, dst] = cache[:, src]

    def _prepare(
        self, seqs: tuple[ScheduledSeq, ...], decodes: RunningDecodes | None = None
    ) -> tuple[StepInputs, np.ndarray]:
        """The step's tensors, gathered from the batch, and its query offsets."""
        step = layout(self.batch, seqs, decodes)
        arrays = gather(self.batch, seqs, self.block_size, step=step)

        def tensor(values: np.ndarray) -> torch.Tensor:
            return array_to_device(values, self.device)

        meta = AttentionMetadata(
            slot_mapping=tensor(arrays.slots),
            block_tables=tensor(arrays.block_tables),
            query_start_loc=tuple(arrays.query_start_loc.tolist()),
            seq_lens=tuple(arrays.seq_lens.tolist()),
            block_size=self.block_size,
            seq_lens_tensor=tensor(arrays.seq_lens),
            decode_only=len(arrays.input_ids) == len(step.rows),
            query_start_tensor=tensor(arrays.query_start_loc),
        )
        inputs = StepInputs(
            tensor(arrays.input_ids),
            tensor(arrays.positions),
            meta,
            tensor(arrays.logits_indices),
            self._lora(seqs, decodes, step.counts),
        )
        return inputs, arrays.query_start_loc

    def _lora(
        self, seqs: tuple[ScheduledSeq, ...], decodes: RunningDecodes | None, counts: np.ndarray
    ) -> LoRABatch | None:
        """Per-token adapter slots of the step, activating the step's adapters on device."""
        seq_slots = self._adapter_slots(seqs, decodes)
        if seq_slots is None:
            return None
        assert self.adapters is not None
        token_slots = np.repeat(np.array(seq_slots, dtype=np.int64), counts).tolist()
        return LoRABatch.build(self.adapters.slots, token_slots)

    def _pick(
        self,
        seqs: tuple[ScheduledSeq, ...],
        logits: torch.Tensor,
        decodes: RunningDecodes | None = None,
    ) -> ModelRunnerOutput:
        """Each sequence's tokens (or beam candidates) and prompt log-probabilities from its
        rows of the host logits. Every sampling sequence (greedy or sampled, constrained or
        not, with drafts to verify or not) is sampled in one batched call, and the beams in
        another; the decodes' rows (the last ones) take their argmax. A request whose rows
        are not finite, or whose sampling raises, fails alone."""
        logprobs = torch.log_softmax(logits, dim=-1)
        finite = torch.isfinite(logits).all(-1).tolist()
        prompt: dict[int, tuple[TokenLogprob, ...]] = {}
        failed: dict[str, RequestFailure] = {}
        pending: list[PendingSeq] = []
        beams: list[PendingSeq] = []
        row = 0
        for s in seqs:
            owned = slice(row, row + s.num_logit_rows)
            start = row + s.num_prompt_rows
            row = owned.stop
            if s.request_id in failed:
                continue
            if not all(finite[owned]):
                failed[s.request_id] = RequestFailure(s.request_id, NON_FINITE)
                continue
            if s.num_prompt_rows:
                prompt[s.seq_id] = _prompt_entries(s, logprobs[owned.start : start])
            if not s.sample:
                continue
            try:
                (beams if s.beam_topk else pending).append(self._pending(s, start))
            except Exception as e:  # this request's sampling only: the step goes on
                failed[s.request_id] = failure_from_exception(s.request_id, "sampling", e)
        sampled = _each_alone_on_failure(
            lambda rows: sample_seqs(rows, logits, logprobs, self.generator),
            pending,
            failed,
            self._accept_grammar,
        )
        candidates = _each_alone_on_failure(
            lambda rows: beam_candidates(rows, logprobs), beams, failed
        )
        decoded = _argmax_decodes(decodes, logits, finite, failed) if decodes is not None else ()
        output = ModelRunnerOutput(
            sampled, candidates, tuple(failed.values()), prompt or None, decoded
        )
        return _without_failed(output, _owners(seqs, decodes), decodes=decodes)

    def _pending(self, s: ScheduledSeq, row: int) -> PendingSeq:
        """A sequence to sample from rows row.. with what min_tokens holds back and its
        grammar's masks (errors are this request's)."""
        held = s.num_output_tokens < s.sampling.min_tokens
        stops = stop_token_ids(s.sampling, self.eos_token_ids) if held else frozenset()
        mask = None
        if s.sampling.structured is not None:
            assert self.structured is not None, "a constrained request on a runner without one"
            mask = self.structured.mask(s)
        return PendingSeq(s, row, stops, mask)

    def _accept_grammar(self, p: PendingSeq, entries: tuple[TokenLogprob, ...]) -> None:
        """Advance a constrained sequence's grammar by the tokens it emits."""
        if p.mask is not None:
            assert self.structured is not None
            self.structured.accept(p.seq, [e.token_id for e in entries])

    def _greedy_on_device(
        self,
        seqs: tuple[ScheduledSeq, ...],
        logits: torch.Tensor,
        decodes: RunningDecodes | None = None,
    ) -> PendingOutput:
        """Argmax where the logits are (drafts verified against it); only token ids and
        their log-probabilities (those of `seqs`: the decodes' are not needed) go to the
        host, in one copy that result() waits for. The ids stay on the device for the next
        step's placeholders."""
        best = logits.argmax(-1)
        finite = torch.isfinite(logits).all(-1)
        chosen = _chosen_logprobs(logits, best, decodes)
        packed = torch.stack((best.double(), chosen, finite.double()))
        self._sampled = None
        if all(s.num_sample_rows == 1 for s in seqs):
            row_of = {s.seq_id: i for i, s in enumerate(seqs)}
            if decodes is not None:
                rows = range(len(seqs), len(seqs) + len(decodes))
                row_of.update(zip(decodes.seq_ids, rows, strict=True))
            self._sampled = (best, row_of)
        if not packed.is_cuda:
            return PendingOutput(seqs, packed, decodes=decodes)
        done = torch.cuda.Event()
        host = packed.to("cpu", non_blocking=True)
        done.record()
        return PendingOutput(seqs, host, done, decodes=decodes)


def _chosen_logprobs(
    logits: torch.Tensor, best: torch.Tensor, decodes: RunningDecodes | None
) -> torch.Tensor:
    """float64 log-probabilities of the `best` ids in the rows before the decodes' (whose
    rows, the last len(decodes), get 0: nothing reads them)."""
    rows = logits.shape[0]
    first = rows - (len(decodes) if decodes is not None else 0)
    if first == 0:
        return torch.zeros(rows, dtype=torch.float64, device=logits.device)
    chosen = logits[:first].log_softmax(-1).gather(1, best[:first, None])[:, 0].double()
    if first == rows:
        return chosen
    return torch.cat((chosen, chosen.new_zeros(rows - first)))


@dataclass(frozen=True)
class PendingOutput:
    """A launched step's output: `ready`, or greedy ids, log-probabilities and whether the
    row was finite ([3, rows], float64) on their way to the host until `done`."""

    seqs: tuple[ScheduledSeq, ...] = ()
    host: torch.Tensor | None = None
    done: torch.cuda.Event | None = None
    ready: ModelRunnerOutput | None = None
    on_result: Callable[[ModelRunnerOutput], None] | None = None  # told the output once known
    decodes: RunningDecodes | None = None  # their rows follow those of `seqs`

    def result(self) -> ModelRunnerOutput:
        output = self.ready
        if output is None:
            assert self.host is not None
            if self.done is not None:
                self.done.synchronize()
            output = _greedy_output(self.seqs, self.host, self.decodes)
        if self.on_result is not None:
            self.on_result(output)
        return output


def _recorder(batch: InputBatch, step: SchedulerOutput) -> Callable[[ModelRunnerOutput], None]:
    """Appends a step's sampled tokens to the batch's histories."""
    seqs, decodes = step.seqs, step.decodes

    def record(output: ModelRunnerOutput) -> None:
        batch.record(seqs, output)
        if decodes is not None:
            batch.record_decodes(decodes, output)

    return record


def _step_adapters(
    seqs: tuple[ScheduledSeq, ...], decodes: RunningDecodes | None
) -> list[str | None]:
    """Each sequence's adapter key (None: base): `seqs`, then the decodes' columns."""
    keys = [s.adapter_key for s in seqs]
    if decodes is not None:
        keys += decodes.adapters()
    return keys


def _owners(
    seqs: tuple[ScheduledSeq, ...], decodes: RunningDecodes | None
) -> list[tuple[int, str]]:
    """(seq_id, request_id) of every sequence of the step."""
    owners = [(s.seq_id, s.request_id) for s in seqs]
    if decodes is not None:
        owners += zip(decodes.seq_ids, decodes.request_ids, strict=True)
    return owners


def _argmax_decodes(
    decodes: RunningDecodes,
    logits: torch.Tensor,
    finite: list[bool],
    failed: dict[str, RequestFailure],
) -> tuple[int, ...]:
    """The decodes' tokens from the last len(decodes) rows (host logits), their argmax, in
    column order; a row not finite fails its request."""
    first = logits.shape[0] - len(decodes)
    if not all(finite[first:]):
        for request_id, ok in zip(decodes.request_ids, finite[first:], strict=True):
            if not ok:
                failed.setdefault(request_id, RequestFailure(request_id, NON_FINITE))
    return tuple(logits[first:].argmax(-1).tolist())


def _greedy_output(
    seqs: tuple[ScheduledSeq, ...], packed: torch.Tensor, decodes: RunningDecodes | None = None
) -> ModelRunnerOutput:
    ids, values, finite = packed.tolist()
    output = _greedy_rows(seqs, ids, values, decodes)
    if all(finite):
        return output
    failed = list(_non_finite(seqs, finite))
    if decodes is not None:
        first = len(finite) - len(decodes)
        known = {f.request_id for f in failed}
        for j, request_id in enumerate(decodes.request_ids):
            if not finite[first + j] and request_id not in known:
                known.add(request_id)
                failed.append(RequestFailure(request_id, NON_FINITE))
    return _without_failed(output, _owners(seqs, decodes), tuple(failed), decodes)


Result = TypeVar("Result")


def _each_alone_on_failure(
    batched: Callable[[list[PendingSeq]], list[Result]],
    seqs: list[PendingSeq],
    failed: dict[str, RequestFailure],
    then: Callable[[PendingSeq, Result], None] | None = None,
) -> dict[int, Result]:
    """batched(seqs), each sequence's result by its id; should the call raise, each
    sequence alone in a call of its own, so that only the requests whose sampling fails
    fail (into `failed`). `then` takes each result before it counts (its errors too are
    the request's)."""
    try:
        results: list[Result] | None = batched(seqs)
    except Exception:
        results = None
    out: dict[int, Result] = {}
    for i, p in enumerate(seqs):
        s = p.seq
        if s.request_id in failed:  # another of its sequences failed alone
            continue
        try:
            result = results[i] if results is not None else batched([p])[0]
            if then is not None:
                then(p, result)
            out[s.seq_id] = result
        except Exception as e:
            failed[s.request_id] = failure_from_exception(s.request_id, "sampling", e)
    return out


def _prompt_entries(s: ScheduledSeq, logprobs: torch.Tensor) -> tuple[TokenLogprob, ...]:
    """logprobs [num_prompt_rows, vocab]: row j gives prompt_next_ids[j]'s log-probability."""
    ids = torch.tensor(s.prompt_next_ids)
    chosen = logprobs.gather(1, ids[:, None])[:, 0].tolist()
    return tuple(
        TokenLogprob(t, lp, top_logprobs(row, s.prompt_top))
        for t, lp, row in zip(s.prompt_next_ids, chosen, logprobs, strict=True)
    )


def _non_finite(seqs: tuple[ScheduledSeq, ...], finite: list[float]) -> tuple[RequestFailure, ...]:
    failed: dict[str, RequestFailure] = {}
    row = 0
    for s in seqs:
        rows = slice(row, row + s.num_sample_rows)
        row = rows.stop
        if not all(finite[rows]):
            failed[s.request_id] = RequestFailure(s.request_id, NON_FINITE)
    return tuple(failed.values())


def _without_failed(
    output: ModelRunnerOutput,
    owners: Iterable[tuple[int, str]],
    failed: tuple[RequestFailure, ...] | None = None,
    decodes: RunningDecodes | None = None,
) -> ModelRunnerOutput:
    """output without any sequence of a failed request (a request fails as a whole; a
    column of `decodes` holds NO_TOKEN); owners: (seq_id, request_id) of the step's
    sequences."""
    failed = output.failed if failed is None else failed
    if not failed:
        return output
    gone = {f.request_id for f in failed}
    dropped = {seq_id for seq_id, request_id in owners if request_id in gone}
    prompt = output.prompt_logprobs
    decoded = output.decoded
    if decodes is not None and decoded:
        rows = zip(decoded, decodes.request_ids, strict=True)
        decoded = tuple(NO_TOKEN if r in gone else t for t, r in rows)
    return ModelRunnerOutput(
        {k: v for k, v in output.sampled.items() if k not in dropped},
        {k: v for k, v in output.beam_topk.items() if k not in dropped},
        failed,
        {k: v for k, v in prompt.items() if k not in dropped} if prompt else None,
        decoded,
    )


def _greedy_rows(
    seqs: tuple[ScheduledSeq, ...],
    ids: list[float],
    values: list[float],
    decodes: RunningDecodes | None = None,
) -> ModelRunnerOutput:
    """Tokens of greedy rows: those of `seqs` (drafts verified), then the decodes' column."""
    sampled: dict[int, tuple[TokenLogprob, ...]]
    first = len(ids) - (len(decodes) if decodes is not None else 0)
    if first == len(seqs):  # one row per sequence: no drafts to verify
        sampled = {
            s.seq_id: (TokenLogprob(int(t), lp),)
            for s, t, lp in zip(seqs, ids, values, strict=False)
        }
    else:
        sampled = {}
        row = 0
        for s in seqs:
            rows = slice(row, row + s.num_sample_rows)
            row = rows.stop
            tokens = accept_greedy([int(t) for t in ids[rows]], s.spec_token_ids)
            sampled[s.seq_id] = tuple(
                TokenLogprob(t, lp) for t, lp in zip(tokens, values[rows], strict=False)
            )
    decoded = tuple(map(int, ids[first:])) if decodes is not None else ()
    return ModelRunnerOutput(sampled, {}, decoded=decoded)
