"""A tiny random Llama written as GGUF with the `gguf` package, shaped like SmolLM2's file:
byte-level BPE vocabulary with ChatML specials, a chat template, tied embeddings, Q4_1
matrices (norms in F32), and Q/K in llama.cpp's rotary layout."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
from transformers.convert_slow_tokenizer import bytes_to_unicode

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
MERGES = ("Ġ t", "h e", "Ġt he", "i n", "Ġ a")
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SHAPE = dict(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, context=128)


def tiny_vocab() -> list[str]:
    tokens = list(SPECIALS) + list(bytes_to_unicode().values())
    tokens += ["".join(merge.split(" ")) for merge in MERGES]
    return tokens


def _llama_cpp_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp stores Q and K with each head's rotary halves interleaved."""
    rows, cols = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def write_tiny_llama_gguf(path: Path, seed: int = 0) -> Path:
    s = SHAPE
    head_dim = s["hidden"] // s["heads"]
    tokens = tiny_vocab()
    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return rng.normal(0.0, 0.08, (rows, cols)).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("tiny test llama")
    writer.add_context_length(s["context"])
    writer.add_embedding_length(s["hidden"])
    writer.add_block_count(s["layers"])
    writer.add_feed_forward_length(s["intermediate"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(s["heads"])
    writer.add_head_count_kv(s["kv_heads"])
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    control, normal = gguf.TokenType.CONTROL, gguf.TokenType.NORMAL
    writer.add_token_types([control if t in SPECIALS else normal for t in tokens])
    writer.add_token_merges(list(MERGES))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    def quantized(name: str, weight: np.ndarray) -> None:
        kind = gguf.GGMLQuantizationType.Q4_1
        writer.add_tensor(name, gguf.quants.quantize(weight, kind), raw_dtype=kind)

    def norm(name: str) -> None:
        writer.add_tensor(name, (1.0 + rng.normal(0, 0.1, s["hidden"])).astype(np.float32))

    quantized("token_embd.weight", matrix(len(tokens), s["hidden"]))
    for i in range(s["layers"]):
        norm(f"blk.{i}.attn_norm.weight")
        q = matrix(s["heads"] * head_dim, s["hidden"])
        k = matrix(s["kv_heads"] * head_dim, s["hidden"])
        quantized(f"blk.{i}.attn_q.weight", _llama_cpp_rotary(q, s["heads"]))
        quantized(f"blk.{i}.attn_k.weight", _llama_cpp_rotary(k, s["kv_heads"]))
        quantized(f"blk.{i}.attn_v.weight", matrix(s["kv_heads"] * head_dim, s["hidden"]))
        quantized(f"blk.{i}.attn_output.weight", matrix(s["hidden"], s["hidden"]))
        norm(f"blk.{i}.ffn_norm.weight")
        quantized(f"blk.{i}.ffn_gate.weight", matrix(s["intermediate"], s["hidden"]))
        quantized(f"blk.{i}.ffn_up.weight", matrix(s["intermediate"], s["hidden"]))
        quantized(f"blk.{i}.ffn_down.weight", matrix(s["hidden"], s["intermediate"]))
    norm("output_norm.weight")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
