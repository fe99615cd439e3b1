"""Stage 3: train the target Llama from scratch on the python domain (+ chat documents)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from models.training.data import WindowSampler, eval_windows, mean_loss, next_token_loss
from models.training.encode import load_stream
from models.training.llama import llama_config, new_model, parameter_count, save_bf16
from models.training.settings import BuildSettings
from models.training.train_loop import autocast_for, run_training


def logits_fn(model: torch.nn.Module, device: torch.device):
    """ids [B, T] -> logits [B, T, V] under the device's autocast."""

    def logits_of(ids: torch.Tensor) -> torch.Tensor:
        with autocast_for(device):
            return model(input_ids=ids, use_cache=False).logits

    return logits_of


def validation_fn(model: torch.nn.Module, windows: torch.Tensor, device: torch.device):
    logits_of = logits_fn(model, device)

    def valid_loss() -> float:
        model.eval()
        loss = mean_loss(logits_of, windows, batch_size=16)
        model.train()
        return loss

    return valid_loss


def train_target(
    settings: BuildSettings, work: Path, tokenizer_dir: Path, out_dir: Path, device: torch.device
) -> tuple[LlamaForCausalLM, dict]:
    """Train, save to out_dir in bf16, and return the model (as saved, in fp32) and its report."""
    train = settings.target_train
    model = new_model(llama_config(settings.target_shape, settings), train.seed, device)
    model.train()
    sampler = WindowSampler(
        load_stream(work, "python", "train", device), train.seq_len, train.batch_size, train.seed
    )
    windows = eval_windows(
        load_stream(work, "python", "valid", device), train.seq_len, train.eval_windows
    )
    logits_of = logits_fn(model, device)

    def batch_loss() -> torch.Tensor:
        ids = sampler.next_batch()
        return next_token_loss(logits_of(ids), ids)

    params = dict(model.named_parameters())
    report = run_training(
        "target",
        params,
        batch_loss,
        validation_fn(model, windows, device),
        train,
        tokens_per_step=train.batch_size * train.seq_len,
    )
    save_bf16(model, out_dir, tokenizer_dir)
    model.eval()
    summary = {
        "parameters": parameter_count(model),
        "shape": asdict(settings.target_shape),
        "train": asdict(train),
        **asdict(report),
    }
    return model, summary
