"""The tokenizer's fixed parts: special tokens and the chat format, in Jinja and in Python.

The chat template is what /v1/chat/completions renders; `render_chat_turns` writes the same
text for the training documents, so training and serving agree token for token.
"""

from __future__ import annotations

EOS_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|bos|>"
PAD_TOKEN = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
# Order fixes the ids: eos 0, bos 1, pad 2, then the role markers.
SPECIAL_TOKENS = (EOS_TOKEN, BOS_TOKEN, PAD_TOKEN, *ROLE_TOKENS)

# One line on purpose: transformers renders templates with trim_blocks, which would eat
# literal newlines after block tags; the '\n' escapes inside Jinja strings are kept.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def render_chat_turns(turns: list[tuple[str, str]], add_generation_prompt: bool) -> str:
    """The chat template's output without the leading BOS, for (role, content) turns."""
    parts = []
    for role, content in turns:
        parts.append(f"<|{role}|>\n{content}\n")
        if role == "assistant":
            parts.append(EOS_TOKEN)
    if add_generation_prompt:
        parts.append("<|assistant|>\n")
    return "".join(parts)
