"""Stage 4: distil the draft from the target on the python domain.

Loss, as in Hinton et al. (2015): alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
+ (1 - alpha) * cross-entropy on the real next token. T^2 keeps the soft term's gradient scale
independent of T.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from models.training.data import WindowSampler, eval_windows, next_token_loss
from models.training.encode import load_stream
from models.training.llama import llama_config, new_model, parameter_count, save_bf16
from models.training.settings import BuildSettings, DistillSettings
from models.training.train_loop import run_training
from models.training.train_target import logits_fn, validation_fn


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    ids: torch.Tensor,
    settings: DistillSettings,
) -> torch.Tensor:
    """Logits [B, T, V], ids [B, T]; positions predict the next id."""
    vocab = student_logits.shape[-1]
    t = settings.temperature
    student = (student_logits[:, :-1].reshape(-1, vocab).float() / t).log_softmax(-1)
    teacher = (teacher_logits[:, :-1].reshape(-1, vocab).float() / t).log_softmax(-1)
    soft = F.kl_div(student, teacher, log_target=True, reduction="batchmean") * t * t
    hard = next_token_loss(student_logits, ids)
    return settings.alpha * soft + (1 - settings.alpha) * hard


def distill_draft(
    settings: BuildSettings,
    teacher: LlamaForCausalLM,
    work: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    device: torch.device,
) -> dict:
    train = settings.draft_train
    draft = new_model(llama_config(settings.draft_shape, settings), train.seed, device)
    draft.train()
    teacher.eval()
    sampler = WindowSampler(
        load_stream(work, "python", "train", device), train.seq_len, train.batch_size, train.seed
    )
    windows = eval_windows(
        load_stream(work, "python", "valid", device), train.seq_len, train.eval_windows
    )
    student_of, teacher_of = logits_fn(draft, device), logits_fn(teacher, device)

    def batch_loss() -> torch.Tensor:
        ids = sampler.next_batch()
        with torch.no_grad():
            teacher_logits = teacher_of(ids)
        return distillation_loss(student_of(ids), teacher_logits, ids, settings.distill)

    report = run_training(
        "draft",
        dict(draft.named_parameters()),
        batch_loss,
        validation_fn(draft, windows, device),
        train,
        tokens_per_step=train.batch_size * train.seq_len,
    )
    save_bf16(draft, out_dir, tokenizer_dir)
    return {
        "parameters": parameter_count(draft),
        "shape": asdict(settings.draft_shape),
        "train": asdict(train),
        "distill": asdict(settings.distill),
        "valid_loss_note": "validation loss is the plain next-token cross-entropy",
        **asdict(report),
    }
