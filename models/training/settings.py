"""Every knob of the model build, as frozen dataclasses: `full_settings()` and `smoke_settings()`.

The full settings are what made the shipped models; the smoke settings run the same code end to
end on a laptop CPU in well under a minute (tiny corpora, tiny models, a handful of steps).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class CorpusSettings:
    """Which bytes each domain gets, and how files are split into train / valid / test.

    Splits are by file: sha256(f"{seed}:{path}") mod 100 below `test_percent` is test, the next
    `valid_percent` are valid. Byte caps pick files in that same hash order, so a cap keeps a
    spread of the tree rather than its alphabetical head.
    """

    seed: int = 0
    valid_percent: int = 3
    test_percent: int = 5
    python_max_bytes: int = 64_000_000
    adapter_max_bytes: int = 4_000_000
    adapter_min_bytes: int = 1_000_000
    max_file_bytes: int = 300_000
    min_file_chars: int = 64
    chat_fraction: float = 0.08
    chat_max_source_chars: int = 1_200
    tokenizer_sample_bytes: int = 1_000_000
    shipped_test_bytes: int = 120_000
    shipped_doc_bytes: int = 8_000


@dataclass(frozen=True)
class ModelShape:
    """The Llama dimensions that differ between target and draft."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int


@dataclass(frozen=True)
class TrainSettings:
    """One optimisation run: AdamW, linear warmup, cosine decay to `min_lr_ratio * lr`.

    `max_seconds` is a safety stop so the whole build fits its time slot; the report says
    whether it fired (it should not with the full settings on an H100).
    """

    steps: int
    batch_size: int
    seq_len: int
    lr: float
    warmup_steps: int
    weight_decay: float
    eval_every: int
    eval_windows: int
    max_seconds: float
    seed: int
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0


@dataclass(frozen=True)
class DistillSettings:
    """Soft-target distillation: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE."""

    temperature: float = 2.0
    alpha: float = 0.5


@dataclass(frozen=True)
class AdapterSpec:
    """One LoRA adapter: its name (= its directory under models/adapters), corpus and shape."""

    name: str
    domain: str
    rank: int
    alpha: int
    dropout: float = 0.05


LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class BuildSettings:
    corpus: CorpusSettings
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float
    target_name: str
    draft_name: str
    target_shape: ModelShape
    target_train: TrainSettings
    draft_shape: ModelShape
    draft_train: TrainSettings
    distill: DistillSettings
    adapters: tuple[AdapterSpec, ...]
    adapter_train: TrainSettings


def full_settings() -> BuildSettings:
    """The settings of the shipped models (about 5 minutes of an H100)."""
    return BuildSettings(
        corpus=CorpusSettings(),
        vocab_size=4096,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        target_name="tandem-code-8m",
        draft_name="tandem-code-draft",
        target_shape=ModelShape(
            hidden_size=256,
            intermediate_size=384,
            num_hidden_layers=6,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
        target_train=TrainSettings(
            steps=1600,
            batch_size=16,
            seq_len=1024,
            lr=2e-3,
            warmup_steps=100,
            weight_decay=0.1,
            eval_every=100,
            eval_windows=64,
            max_seconds=120.0,
            seed=1,
        ),
        draft_shape=ModelShape(
            hidden_size=128,
            intermediate_size=384,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
        ),
        draft_train=TrainSettings(
            steps=2400,
            batch_size=32,
            seq_len=1024,
            lr=3e-3,
            warmup_steps=100,
            weight_decay=0.1,
            eval_every=200,
            eval_windows=64,
            max_seconds=120.0,
            seed=2,
        ),
        distill=DistillSettings(),
        adapters=(
            AdapterSpec(name="python-tests", domain="python-tests", rank=8, alpha=16),
            AdapterSpec(name="c-headers", domain="c-headers", rank=16, alpha=32),
            AdapterSpec(name="docstrings", domain="docstrings", rank=8, alpha=16),
        ),
        adapter_train=TrainSettings(
            steps=800,
            batch_size=16,
            seq_len=1024,
            lr=2e-3,
            warmup_steps=40,
            weight_decay=0.0,
            eval_every=100,
            eval_windows=32,
            max_seconds=60.0,
            seed=3,
        ),
    )


def smoke_settings() -> BuildSettings:
    """The same pipeline at toy scale, for checking the scripts on a CPU in seconds."""
    full = full_settings()
    tiny_train = TrainSettings(
        steps=6,
        batch_size=2,
        seq_len=64,
        lr=3e-3,
        warmup_steps=2,
        weight_decay=0.1,
        eval_every=3,
        eval_windows=2,
        max_seconds=30.0,
        seed=1,
    )
    return replace(
        full,
        corpus=replace(
            full.corpus,
            python_max_bytes=600_000,
            adapter_max_bytes=150_000,
            adapter_min_bytes=50_000,
            tokenizer_sample_bytes=20_000,
            shipped_test_bytes=8_000,
            shipped_doc_bytes=3_000,
            valid_percent=15,
            test_percent=15,
        ),
        vocab_size=512,
        target_shape=ModelShape(64, 96, 2, 4, 2),
        target_train=tiny_train,
        draft_shape=ModelShape(32, 64, 1, 2, 1),
        draft_train=replace(tiny_train, seed=2),
        adapter_train=replace(tiny_train, seed=3, weight_decay=0.0),
    )
