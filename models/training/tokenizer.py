"""Stage 2: a byte-level BPE tokenizer trained with `tokenizers`, saved for AutoTokenizer.

Trained on the python domain's train split plus a slice of each adapter domain's train split
(adapters cannot change the vocabulary, so it should know a little C and prose too).
Encoding a text adds BOS in front (as Llama tokenizers do); the chat template writes its own
BOS and is meant to be encoded with add_special_tokens=False.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from models.training.documents import Document
from models.training.tokenizer_spec import (
    BOS_TOKEN,
    CHAT_TEMPLATE,
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
)


def training_texts(
    python_docs: list[Document], adapter_docs: dict[str, list[Document]], sample_bytes: int
) -> Iterator[str]:
    yield from (d.text for d in python_docs if d.split == "train")
    for docs in adapter_docs.values():
        total = 0
        for doc in docs:
            if doc.split != "train":
                continue
            if total >= sample_bytes:
                break
            total += doc.num_bytes
            yield doc.text


def train_bpe(texts: Iterator[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    # Newline runs are tokens of their own: a prompt that ends with "\n" then ends on a token
    # boundary that training also had (otherwise "\n" fuses with the next line's indent).
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return tokenizer


def save_for_transformers(tokenizer: Tokenizer, out_dir: Path, max_length: int) -> None:
    """Write tokenizer.json, tokenizer_config.json (chat template, special tokens) to out_dir."""
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(str(out_dir))
    _widen_compatibility(out_dir / "tokenizer_config.json")


def _widen_compatibility(config_path: Path) -> None:
    """transformers 5 names the class TokenizersBackend and keeps the template in
    chat_template.jinja; transformers 4 knows neither. Both read these keys."""
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
