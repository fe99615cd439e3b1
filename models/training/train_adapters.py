"""Stage 5: one LoRA adapter per domain, trained with peft on the frozen (shipped) target.

Each adapter targets every attention and MLP projection (q, k, v, o, gate, up, down). Weights
are stored in bf16, like the base, and adapter_config.json names the base by its served name.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from models.training.data import WindowSampler, eval_windows, next_token_loss
from models.training.encode import load_stream
from models.training.settings import LORA_TARGET_MODULES, AdapterSpec, BuildSettings
from models.training.train_loop import run_training
from models.training.train_target import logits_fn, validation_fn


def lora_config(spec: AdapterSpec) -> LoraConfig:
    return LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(LORA_TARGET_MODULES),
        bias="none",
        task_type="CAUSAL_LM",
    )


def train_adapter(
    spec: AdapterSpec,
    settings: BuildSettings,
    work: Path,
    target_dir: Path,
    out_dir: Path,
    device: torch.device,
) -> dict:
    train = settings.adapter_train
    # transformers' @wraps(nn.Module.to/cuda) leaves the method unbound to a checker
    base = LlamaForCausalLM.from_pretrained(str(target_dir), dtype=torch.float32).to(device)  # type: ignore[arg-type]
    windows = eval_windows(
        load_stream(work, spec.domain, "valid", device), train.seq_len, train.eval_windows
    )
    base_valid_loss = validation_fn(base, windows, device)()
    torch.manual_seed(train.seed)
    model = get_peft_model(base, lora_config(spec))
    model.train()
    sampler = WindowSampler(
        load_stream(work, spec.domain, "train", device), train.seq_len, train.batch_size, train.seed
    )
    logits_of = logits_fn(model, device)

    def batch_loss() -> torch.Tensor:
        ids = sampler.next_batch()
        return next_token_loss(logits_of(ids), ids)

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    report = run_training(
        f"adapter {spec.name}",
        params,
        batch_loss,
        validation_fn(model, windows, device),
        train,
        tokens_per_step=train.batch_size * train.seq_len,
    )
    for param in params.values():
        param.data = param.data.to(torch.bfloat16)
    model.save_pretrained(str(out_dir))
    _tidy_config(out_dir / "adapter_config.json", settings.target_name)
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's empty card; models/README.md is ours
    return {
        "spec": asdict(spec),
        "trainable_parameters": sum(p.numel() for p in params.values()),
        "base_valid_loss": base_valid_loss,
        "train": asdict(train),
        **asdict(report),
    }


def _tidy_config(config_path: Path, base_name: str) -> None:
    """peft writes the local path the base was loaded from (the served name travels better)
    and the target modules in set order (sorted, rebuilds give identical files)."""
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_name
    config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
