"""Train the real model's LoRA adapters on this CPU, in minutes:

    python -m models.smollm2.train_adapters [--steps 40] [--only sql]

One adapter per task of models/smollm2/adapter_tasks.py, LoRA r=8 on q_proj and v_proj of
every layer, trained with peft on the frozen fp32 base. The loss is the assistant's answer
(and its closing <|im_end|>) after the chat template, prompt tokens masked; logits are only
computed at those positions (the 49,152-token output layer dominates a CPU step otherwise).
Weights are saved in bf16, and the held-out loss is measured with the saved (rounded) ones.
Writes models/smollm2/adapters/<task>/ and models/smollm2/adapters/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from models.smollm2.adapter_tasks import TASKS, ChatExample, examples
from models.smollm2.paths import ADAPTERS_DIR, MODEL_DIR, MODEL_NAME
from models.smollm2.prompts import chat_prompt_ids

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM


@dataclass(frozen=True)
class AdapterTraining:
    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    steps: int = 40
    batch_size: int = 4
    learning_rate: float = 2e-3
    heldout_examples: int = 32
    seed: int = 0


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [batch, seq]
    attention_mask: torch.Tensor  # [batch, seq]
    labels: torch.Tensor  # [batch, seq]; -100 where no loss


def encode(tokenizer: PreTrainedTokenizerBase, batch: list[ChatExample]) -> Batch:
    """Prompt (chat template, generation prompt) + answer + <|im_end|>, right-padded."""
    rows = []
    for example in batch:
        prompt = chat_prompt_ids(tokenizer, example.user)
        answer = tokenizer(example.answer, add_special_tokens=False).input_ids
        answer.append(tokenizer.eos_token_id)
        rows.append((prompt + answer, [-100] * len(prompt) + answer))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    return Batch(
        input_ids=torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows]),
        attention_mask=torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows]),
        labels=torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows]),
    )


def answer_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy over the answer tokens only."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    causal_lm = cast("LlamaForCausalLM", base)  # SmolLM2 is a Llama: .model and .lm_head
    hidden = causal_lm.model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask
    ).last_hidden_state
    targets = batch.labels[:, 1:]
    where = targets != -100
    logits = causal_lm.lm_head(hidden[:, :-1][where])  # [answer_tokens, vocab]
    return torch.nn.functional.cross_entropy(logits.float(), targets[where])


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, batches: list[Batch]) -> float:
    model.eval()
    counts = [(b.labels[:, 1:] != -100).sum().item() for b in batches]
    losses = [answer_loss(model, b).item() * n for b, n in zip(batches, counts, strict=True)]
    return sum(losses) / sum(counts)


def train_one(task: str, settings: AdapterTraining, out: Path) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(
        MODEL_DIR, dtype=torch.float32, local_files_only=True
    )
    held = examples(task, settings.heldout_examples, settings.seed, heldout=True)
    held_batches = [encode(tokenizer, held[i : i + 8]) for i in range(0, len(held), 8)]
    base_loss = heldout_loss(base, held_batches)
    torch.manual_seed(settings.seed)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=0.0,
        target_modules=list(settings.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 5) * (1 - step / settings.steps)
    )
    train = examples(task, settings.steps * settings.batch_size, settings.seed, heldout=False)
    start = time.perf_counter()
    curve = []
    for step in range(settings.steps):
        model.train()
        chunk = train[step * settings.batch_size : (step + 1) * settings.batch_size]
        loss = answer_loss(model, encode(tokenizer, chunk))
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        curve.append(round(loss.item(), 4))
        if step % 10 == 0 or step == settings.steps - 1:
            print(f"{task} step {step}: loss {loss.item():.3f}", flush=True)
    seconds = time.perf_counter() - start
    for p in params:  # what is saved (and served) is bf16
        p.data = p.data.to(torch.bfloat16).float()
    tuned_loss = heldout_loss(model, held_batches)
    model.save_pretrained(str(out))
    _tidy(out)
    return {
        "task": task,
        "settings": asdict(settings),
        "trainable_parameters": sum(p.numel() for p in params),
        "train_examples": len(train),
        "train_seconds": round(seconds, 1),
        "train_curve": curve,
        "heldout_examples": len(held),
        "heldout_loss_base": base_loss,
        "heldout_loss_adapter": tuned_loss,
        "torch_threads": torch.get_num_threads(),
    }


def _tidy(out: Path) -> None:
    """bf16 weights; the base named by its served name; no peft placeholder card."""
    from safetensors.torch import load_file, save_file

    weights = out / "adapter_model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(weights)).items()}, str(weights))
    config_path = out / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = MODEL_NAME
    config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "README.md").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=AdapterTraining.steps)
    parser.add_argument("--only", choices=sorted(TASKS), help="train one adapter")
    args = parser.parse_args()
    settings = AdapterTraining(steps=args.steps)
    metrics_path = ADAPTERS_DIR / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    for task in [args.only] if args.only else sorted(TASKS):
        metrics[task] = train_one(task, settings, ADAPTERS_DIR / task)
        print(
            f"{task}: held-out loss {metrics[task]['heldout_loss_base']:.3f} -> "
            f"{metrics[task]['heldout_loss_adapter']:.3f} in {metrics[task]['train_seconds']} s"
        )
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    main()
