"""A tiny byte-level BPE tokenizer with a chat template, trained offline, saved for
AutoTokenizer next to a tiny model (ids 0/1/2 = pad/bos/eos, as tests/factories.TINY)."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL = ("<pad>", "<s>", "</s>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "hello world, héllo wörld, 你好世界, emoji 🙂🚀 and more text",
    "the quick brown fox jumps over the lazy dog",
    "<|user|>\n<|assistant|>\n<|system|>\n",
] * 4


def make_tiny_tokenizer(path: Path, vocab_size: int = 300) -> Path:
    """Write tokenizer files under path (the model's directory); return path."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TEXTS, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.save_pretrained(str(path))
    return path


def make_served_model(path: Path, seed: int = 0) -> Path:
    """A tiny random Llama with the tokenizer above: what a Tandem replica can serve."""
    from tests.factories import make_tiny_model

    make_tiny_model(path, seed=seed, vocab_size=300)
    return make_tiny_tokenizer(path, vocab_size=300)
