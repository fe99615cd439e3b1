"""Measurements for the model card: loss, greedy speculative acceptance, sample completions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from models.training.data import mean_loss

if TYPE_CHECKING:  # types only: importing peft and transformers costs seconds
    from peft import PeftModel
    from transformers import GenerationMixin, PreTrainedModel

    class CausalLM(PreTrainedModel, GenerationMixin):
        """What AutoModelForCausalLM builds, to a type checker: a model that generates."""


def heldout_loss(model: nn.Module, windows: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token loss (nats) of `model` over windows [n, seq_len]."""
    model.eval()
    return mean_loss(lambda ids: model(input_ids=ids, use_cache=False).logits, windows, batch_size)


@torch.no_grad()
def greedy_tokens(model: CausalLM | PeftModel, prompt: torch.Tensor, count: int) -> torch.Tensor:
    """[count] greedy next tokens after prompt [T]; EOS is suppressed so exactly count come."""
    ids = prompt[None, :]
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=count,
        min_new_tokens=count,
        do_sample=False,
    )
    return out[0, prompt.numel() :]


@dataclass(frozen=True)
class Acceptance:
    prompts: int
    new_tokens_per_prompt: int
    k: int
    drafted: int
    accepted: int
    target_steps: int

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted

    @property
    def tokens_per_target_step(self) -> float:
        return self.prompts * self.new_tokens_per_prompt / self.target_steps


def greedy_acceptance(
    target: CausalLM, draft: CausalLM, prompts: list[torch.Tensor], new_tokens: int, k: int
) -> Acceptance:
    """Greedy speculative decoding, simulated exactly: the draft proposes k tokens from the
    accepted prefix, the target keeps the longest prefix equal to its own greedy tokens and adds
    one token of its own. Since greedy verification reproduces the target's greedy output,
    the target's continuation is computed once per prompt and the rounds compare against it.
    """
    drafted = accepted = steps = 0
    for prompt in prompts:
        truth = greedy_tokens(target, prompt, new_tokens)
        pos = 0
        while pos < new_tokens:
            span = min(k, new_tokens - pos)
            guess = greedy_tokens(draft, torch.cat([prompt, truth[:pos]]), span)
            matched = int((guess == truth[pos : pos + span]).int().cumprod(0).sum())
            drafted += span
            accepted += matched
            steps += 1
            pos += matched + 1
    return Acceptance(len(prompts), new_tokens, k, drafted, accepted, steps)


@torch.no_grad()
def complete(model: CausalLM | PeftModel, tokenizer, prompt: str, new_tokens: int) -> str:
    """Greedy completion with a mild repetition penalty (1.2); the prompt is not repeated."""
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(
        **ids,
        max_new_tokens=new_tokens,
        do_sample=False,
        repetition_penalty=1.2,
    )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


@torch.no_grad()
def chat_reply(model: CausalLM | PeftModel, tokenizer, request: str, new_tokens: int) -> str:
    """The assistant's greedy reply to one user message, through the chat template."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": request}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False, repetition_penalty=1.2)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
