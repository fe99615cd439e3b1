"""Speculative decoding at realistic costs on the GPU: a random 1.1B Llama target, a random
~55M Llama draft, and an oracle proposer that runs the draft (so drafting costs what it
really costs) but proposes the target's own greedy continuation, each token kept with
probability a (else replaced by a wrong one), for a in {0.5, 0.7, 0.9}.

Measured: tokens/s with and without speculation (each speculative run right after a plain
one) at batch 1 (k fixed) and batch 64 (the adaptive policy), the acceptance actually seen,
the draft cost ratio c (a drafting round of k tokens over k plain target steps, both
measured here), and the analytic speedup
(1 - a^(k+1)) / ((1 - a)(k c + 1)) at the measured a and c. Outputs with speculation must
equal the plain ones (greedy), which the script checks.

    python -m benchmarks.spec_oracle [--k 4] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from benchmarks.common import hardware, median, print_table, save_random_llama, write_json
from benchmarks.gpu_suite import SHAPE_1B
from workers.config import CacheConfig, EngineConfig, SchedulerConfig
from workers.engine import LLMEngine
from workers.gc_freeze import long_lived_objects_frozen
from workers.protocol import GenerateRequest, SpeculationMode, TokenDelta
from workers.sampling_params import SamplingParams
from workers.spec.config import SpecConfig
from workers.spec.draft_model import DraftModelProposer
from workers.spec.policy import SpecStats, expected_speedup
from workers.spec.proposers import DraftQuery, Proposal
from workers.spec.throughput_gate import ThroughputGate

DRAFT_SHAPE = dict(
    vocab_size=32000,
    hidden_size=512,
    intermediate_size=1408,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)


def save_target(path: Path) -> Path:
    """The 1.1B shape with random weights, except that the output head copies a wide
    embedding: the greedy next token then wins by a wide margin, so the different kernels
    of plain and verify steps (bf16 sums in another order) never flip it, and the oracle's
    reference stays the target's own continuation. Costs are those of any 1.1B Llama."""
    config = AutoConfig.for_model("llama", bos_token_id=1, eos_token_id=2, **SHAPE_1B)
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0.0, 1.0)
        model.lm_head.weight.copy_(model.model.embed_tokens.weight)
    model.save_pretrained(path)
    del model
    torch.cuda.empty_cache()
    return path


class OracleProposer:
    """Runs the real draft model for its cost, then proposes the reference continuation
    with each position independently right with probability `a`."""

    def __init__(self, draft: DraftModelProposer, acceptance: float, seed: int = 0) -> None:
        self.draft = draft
        self.acceptance = acceptance
        self.reference: dict[str, list[int]] = {}  # request id -> greedy output ids
        self.rng = random.Random(seed)
        self.seconds = 0.0
        self.rounds = 0

    def propose(self, queries: list[DraftQuery]) -> list[Proposal | None]:
        start = time.perf_counter()
        drafted = self.draft.propose(queries)
        self.seconds += time.perf_counter() - start
        self.rounds += 1
        out: list[Proposal | None] = []
        for q, proposal in zip(queries, drafted, strict=True):
            if proposal is None:
                out.append(None)
                continue
            done = len(q.token_ids) - q.num_prompt_tokens
            truth = self.reference[q.key][done : done + len(proposal.token_ids)]
            tokens = [
                t if self.rng.random() < self.acceptance else (t + 1) % DRAFT_SHAPE["vocab_size"]
                for t in truth
            ]
            out.append(Proposal(tuple(tokens)) if tokens else None)
        return out

    def release(self, key: str) -> None:
        self.draft.release(key)


def build_engine(target: Path, draft: Path, k: int, adaptive: bool) -> LLMEngine:
    return LLMEngine(
        EngineConfig(
            model=str(target),
            device="cuda",
            dtype="bfloat16",
            cache=CacheConfig(block_size=16, memory_fraction=0.5, enable_prefix_caching=False),
            scheduler=SchedulerConfig(max_num_seqs=64, max_num_batched_tokens=8192),
            spec=SpecConfig(
                draft_model=str(draft),
                num_speculative_tokens=k,
                draft_num_blocks=8192,
                min_acceptance=0.0 if not adaptive else 0.2,
                # Fixed k: with c = 0 the policy always drafts k_max. Adaptive: the default
                # policy: k from the estimated acceptance, gated on measured throughput.
                draft_cost_ratio=0.0 if not adaptive else 0.3,
                max_batch_size=64,
            ),
        )
    )


@dataclass(frozen=True)
class Run:
    tokens_per_s: float  # output tokens of the whole batch per second
    step_ms: float  # mean engine step
    outputs: dict[str, list[int]]  # each request's output ids


def run(
    engine: LLMEngine, prompts: list[list[int]], new_tokens: int, mode: SpeculationMode, tag: str
) -> Run:
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    specs = [
        GenerateRequest(f"{tag}{i}", tuple(p), params, speculation=mode)
        for i, p in enumerate(prompts)
    ]
    step = engine.step
    steps = 0

    def counted() -> list[TokenDelta]:
        nonlocal steps
        steps += 1
        return step()

    engine.step = counted  # type: ignore[method-assign]
    with long_lived_objects_frozen():  # as the replica's engine loop runs
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = engine.generate(specs)
        elapsed = time.perf_counter() - start
    del engine.step
    outputs = {rid: o[0] for rid, o in out.items()}
    return Run(len(prompts) * new_tokens / elapsed, 1000 * elapsed / max(steps, 1), outputs)


def per_position_acceptance(stats: SpecStats) -> float:
    """P(draft position i accepted | positions before it accepted), pooled over positions:
    the a of the analytic model (stats.acceptance_rate is accepted over drafted instead)."""
    accepted = stats.accepted_per_position
    reached = stats.num_drafts + sum(accepted[:-1])
    return sum(accepted) / max(reached, 1)


def plain_step_ms(engine: LLMEngine, prompt: list[int]) -> float:
    """Median target decode step at batch 1, speculation off."""
    params = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    engine.add_request(GenerateRequest("step", tuple(prompt), params))
    times = []
    while engine.has_unfinished():
        t0 = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - t0)
    return 1000 * median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--name", default="spec_oracle_gpu.json")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 32000, (128,), generator=g).tolist() for _ in range(64)]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        target = save_target(Path(tmp) / "target-1b")
        draft = save_random_llama(Path(tmp) / "draft-55m", seed=1, **DRAFT_SHAPE)
        for batch, adaptive in ((1, False), (64, True)):
            engine = build_engine(target, draft, args.k, adaptive)
            speculator = engine.speculator
            assert speculator is not None  # build_engine configures spec
            real_draft = speculator.proposers[SpeculationMode.COLOCATED]
            assert isinstance(real_draft, DraftModelProposer)
            step_ms = plain_step_ms(engine, prompts[0])
            if not adaptive:  # k fixed: draft every step, whatever the measured throughput
                speculator.gate.allow = lambda batch_size: True  # type: ignore[method-assign]
            run(engine, prompts[:batch], 16, SpeculationMode.NONE, "warm")
            base = run(engine, prompts[:batch], args.new_tokens, SpeculationMode.NONE, "r")
            for a in (0.5, 0.7, 0.9):
                if adaptive:  # what the gate learns at one acceptance rate stays with it
                    speculator.gate = ThroughputGate(speculator.config.probe_interval * 2)
                warm = OracleProposer(real_draft, a)
                warm.reference = base.outputs
                speculator.proposers[SpeculationMode.COLOCATED] = warm
                run(engine, prompts[:batch], 32, SpeculationMode.COLOCATED, "r")  # warm-up
                oracle = OracleProposer(real_draft, a, seed=1)
                oracle.reference = base.outputs
                speculator.proposers[SpeculationMode.COLOCATED] = oracle
                # Speculation off right before speculation on: the pair shares the state of
                # the machine (clocks, allocator, the other runs' warm-up).
                plain = run(engine, prompts[:batch], args.new_tokens, SpeculationMode.NONE, "r")
                # fresh counters for this run
                speculator.policy.stats = SpecStats(accepted_per_position=[0] * args.k)
                measured = run(
                    engine, prompts[:batch], args.new_tokens, SpeculationMode.COLOCATED, "r"
                )
                seen = per_position_acceptance(speculator.policy.stats)
                c = oracle.seconds / max(oracle.rounds, 1) / args.k / step_ms * 1000
                analytic = expected_speedup(seen, args.k, c) if batch == 1 else 1.0
                rows.append(
                    {
                        "batch": batch,
                        "a": a,
                        "a_seen": seen,
                        "k": args.k if batch == 1 else "adaptive",
                        "c": c,
                        "step_ms": measured.step_ms,
                        "draft_ms": 1000 * oracle.seconds / max(oracle.rounds, 1),
                        "tok_s_plain": plain.tokens_per_s,
                        "tok_s_spec": measured.tokens_per_s,
                        "speedup": measured.tokens_per_s / plain.tokens_per_s,
                        "analytic": analytic,
                        "vs_analytic": measured.tokens_per_s / plain.tokens_per_s / analytic,
                        "same_output": measured.outputs == plain.outputs == base.outputs,
                    }
                )
                print(rows[-1], flush=True)
            del engine
            torch.cuda.empty_cache()
    write_json(
        args.name,
        {
            "hardware": hardware(),
            "target_shape": SHAPE_1B,
            "draft_shape": DRAFT_SHAPE,
            "k": args.k,
            "new_tokens": args.new_tokens,
            "rows": rows,
        },
    )
    print(
        f"\n{hardware()}; 1.1B target, ~55M draft, bf16, CUDA graphs; oracle proposals; "
        "batch 1: k fixed, analytic at the measured a and c; batch 64: adaptive policy, "
        "analytic column 1.0 (the bar is 0.97x of speculation off)"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
