"""One optimisation loop shared by the target, the draft and the adapters.

AdamW (weight decay on matrices only), linear warmup then cosine decay, gradient clipping,
bf16 autocast on CUDA. The validation loss is measured every `eval_every` steps and at the
end; the parameters of the best measurement are the ones kept (early stopping by selection).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from models.training.settings import TrainSettings


@dataclass
class TrainReport:
    name: str
    steps_done: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    stopped_by_time: bool = False
    best_valid_loss: float = math.inf
    best_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def lr_at(step: int, settings: TrainSettings) -> float:
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return settings.lr * (settings.min_lr_ratio + (1 - settings.min_lr_ratio) * cosine)


def make_optimizer(params: dict[str, nn.Parameter], settings: TrainSettings) -> torch.optim.AdamW:
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = all(p.is_cuda for p in params.values())
    return torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.95), fused=fused)


def autocast_for(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; on CPU (smoke runs) plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def run_training(
    name: str,
    params: dict[str, nn.Parameter],
    batch_loss: Callable[[], torch.Tensor],
    valid_loss: Callable[[], float],
    settings: TrainSettings,
    tokens_per_step: int,
) -> TrainReport:
    """Minimise batch_loss() over `params`; leave `params` at their best validation loss.

    batch_loss draws its own batch and returns a scalar loss tensor (graph attached).
    valid_loss returns the current validation loss (it must run under no_grad itself).
    """
    report = TrainReport(name=name)
    optimizer = make_optimizer(params, settings)
    best_state: dict[str, torch.Tensor] = {}
    start = time.monotonic()
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings)
        loss = batch_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), settings.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        report.steps_done = step + 1
        elapsed = time.monotonic() - start
        report.stopped_by_time = elapsed > settings.max_seconds
        last = report.steps_done == settings.steps or report.stopped_by_time
        if report.steps_done % settings.eval_every == 0 or last:
            _measure(report, loss.item(), valid_loss(), params, best_state, elapsed)
        if report.stopped_by_time:
            break
    report.seconds = time.monotonic() - start
    report.tokens_seen = report.steps_done * tokens_per_step
    with torch.no_grad():
        for key, value in best_state.items():
            params[key].copy_(value)
    return report


def _measure(
    report: TrainReport,
    train_loss: float,
    valid: float,
    params: dict[str, nn.Parameter],
    best_state: dict[str, torch.Tensor],
    elapsed: float,
) -> None:
    report.history.append(
        {"step": report.steps_done, "train_loss": train_loss, "valid_loss": valid, "s": elapsed}
    )
    print(
        f"[{report.name}] step {report.steps_done} train {train_loss:.4f} "
        f"valid {valid:.4f} ({elapsed:.0f}s)",
        flush=True,
    )
    if valid < report.best_valid_loss:
        report.best_valid_loss = valid
        report.best_step = report.steps_done
        for key, value in params.items():
            best_state[key] = value.detach().clone()
