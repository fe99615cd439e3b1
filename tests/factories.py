"""Test factories: tiny random Hugging Face models written to disk, and engines over them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerBase

from adapters.manager import LoRAManager
from workers.config import CacheConfig, EngineConfig, SchedulerConfig
from workers.engine import LLMEngine
from workers.protocol import SpeculationMode
from workers.spec.speculator import Speculator

P = TypeVar("P")

TINY = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

MODEL_TYPES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}


def make_tiny_model(
    path: Path, architecture: str = "LlamaForCausalLM", seed: int = 0, **overrides: Any
) -> Path:
    """Save a random model of the given architecture (float32) under path; return path."""
    kwargs = {**TINY, **overrides}
    config = AutoConfig.for_model(MODEL_TYPES[architecture], **kwargs)
    config.architectures = [architecture]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # larger weights than the default init: confident, tie-free argmax
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
    model.save_pretrained(path)
    return path


def load_hf(path: Path) -> Any:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def engine_config(
    model_dir: Path,
    num_blocks: int | None = 256,
    block_size: int = 4,
    max_num_seqs: int = 16,
    max_num_batched_tokens: int = 512,
    **kwargs: Any,
) -> EngineConfig:
    return EngineConfig(
        model=str(model_dir),
        cache=CacheConfig(
            block_size=block_size,
            num_blocks=num_blocks,
            enable_prefix_caching=kwargs.pop("enable_prefix_caching", True),
        ),
        scheduler=SchedulerConfig(
            max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens
        ),
        **kwargs,
    )


def make_engine(model_dir: Path, **kwargs: Any) -> LLMEngine:
    """An engine over `engine_config(model_dir, **kwargs)`."""
    return LLMEngine(engine_config(model_dir, **kwargs))


def hf_greedy(hf_model: Any, prompt: list[int], max_new_tokens: int, **kwargs: Any) -> list[int]:
    """transformers' greedy (or beam) continuation of one prompt, without the prompt and
    without padding after EOS."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = hf_model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=0,
            **kwargs,
        )
    tokens = out[0, len(prompt) :].tolist()
    eos = hf_model.config.eos_token_id
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def random_prompts(lengths: list[int], seed: int = 1, vocab: int = 128) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def prompt_logits(engine: LLMEngine, prompt: list[int], lora: object | None = None) -> Any:
    """Float32 logits [len(prompt), vocab] of one forward of the engine's model over the
    prompt, written to blocks 0..5 (block size 4), optionally with a LoRABatch."""
    from workers.attention.metadata import AttentionMetadata

    runner = engine.runner
    meta = AttentionMetadata(
        slot_mapping=torch.arange(len(prompt)),
        block_tables=torch.tensor([list(range(6))]),
        query_start_loc=(0, len(prompt)),
        seq_lens=(len(prompt),),
        block_size=4,
    )
    with torch.inference_mode():
        hidden = runner.model(
            torch.tensor(prompt), torch.arange(len(prompt)), runner.kv_caches, meta, lora
        )
        return runner.model.compute_logits(hidden)


def speculator_of(engine: LLMEngine) -> Speculator:
    """The engine's speculator (the test made the engine with `spec`)."""
    assert engine.speculator is not None, "the engine was made without spec"
    return engine.speculator


def proposer_of(engine: LLMEngine, mode: SpeculationMode, kind: type[P]) -> P:
    """The engine's proposer for `mode`, which the test knows is a `kind`."""
    proposer = speculator_of(engine).proposers[mode]
    assert isinstance(proposer, kind), f"{mode} is proposed by {type(proposer).__name__}"
    return proposer


def adapters_of(engine: LLMEngine) -> LoRAManager:
    """The engine's LoRA manager (the test made the engine with `lora`)."""
    assert engine.adapters is not None, "the engine was made without lora"
    return engine.adapters


def decode_text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int] | torch.Tensor) -> str:
    """One sequence of ids as text, special tokens dropped."""
    text = tokenizer.decode(
        ids if isinstance(ids, torch.Tensor) else list(ids), skip_special_tokens=True
    )
    assert isinstance(text, str)  # one sequence decodes to one text
    return text
