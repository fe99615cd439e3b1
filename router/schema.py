"""OpenAI request bodies (pydantic): the only place HTTP JSON becomes typed values.

Numeric ranges are checked once, by `SamplingParams` (see router/sampling.py), so a message
never disagrees with what the engine accepts. Fields the OpenAI API has but Tandem does not
serve are declared so a request that sets them gets a 400 instead of being silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    include_usage: bool = Field(False, description="Send a last chunk with token usage.")


class SamplingFields(BaseModel):
    """Fields shared by completions and chat completions (OpenAI names plus vLLM extras).
    A field Tandem does not know is a 400 naming it, never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The base model's name, an adapter name, or base:adapter.")
    max_tokens: int | None = Field(
        None, description="Most tokens to generate per choice (0 with echo: score the prompt)."
    )
    temperature: float | None = Field(None, description="0 is greedy; default 1.")
    top_p: float | None = Field(None, description="Nucleus sampling mass in (0, 1].")
    n: int = Field(1, description="How many choices to return.")
    stream: bool = Field(False, description="Stream server-sent events.")
    stream_options: StreamOptions | None = Field(None, description="Streaming extras.")
    stop: str | list[str] | None = Field(None, description="Strings that end a choice.")
    presence_penalty: float = Field(0.0, description="In [-2, 2].")
    frequency_penalty: float = Field(0.0, description="In [-2, 2].")
    seed: int | None = Field(None, description="Makes sampling reproducible.")
    user: str | None = Field(None, description="End-user id (logged only).")
    logit_bias: dict[str, float] | None = Field(None, description="Not supported.")
    # vLLM-style extras
    top_k: int = Field(0, description="Keep the k most likely tokens; 0 or -1 disables.")
    min_p: float = Field(0.0, description="Drop tokens below min_p times the top probability.")
    repetition_penalty: float = Field(1.0, description="> 1 discourages repeats.")
    min_tokens: int = Field(0, description="Generate at least this many tokens before EOS.")
    ignore_eos: bool = Field(False, description="Keep generating past EOS.")
    stop_token_ids: list[int] | None = Field(None, description="Token ids that end a choice.")
    beam_width: int = Field(1, description="Beam search width; 1 disables beam search.")
    length_penalty: float = Field(1.0, description="Beam search length penalty exponent.")
    skip_special_tokens: bool = Field(True, description="Leave special tokens out of text.")
    include_stop_str_in_output: bool = Field(False, description="Keep the matched stop string.")
    # Tandem extra
    speculative: bool | None = Field(
        None,
        description="false: decode this request plainly; true or unset: the router decides "
        "(router.speculation in config.yaml, load and observed acceptance).",
    )

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class CompletionRequest(SamplingFields):
    """POST /v1/completions."""

    prompt: str | list[int] | list[str] | list[list[int]] = Field(
        description="Text or token ids, or a list of prompts: one choice each (times n)."
    )
    logprobs: int | None = Field(None, description="Return the top-N logprobs per token.")
    echo: bool = Field(
        False, description="Return the prompt before the completion (with its logprobs)."
    )
    suffix: str | None = Field(None, description="Not supported.")
    best_of: int | None = Field(
        None, description="Sample best_of >= n choices and return the n most likely."
    )
    use_beam_search: bool = Field(
        False, description="vLLM's name for beam search: width best_of (or n)."
    )


class TextPart(BaseModel):
    type: Literal["text"] = Field(description="Only text parts are supported.")
    text: str = Field(description="The text.")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(description="system, user, assistant or tool.")
    content: str | list[TextPart] | None = Field(None, description="Text or text parts.")
    name: str | None = Field(None, description="Optional author name.")

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(description="The conversation so far.")
    max_completion_tokens: int | None = Field(None, description="Alias of max_tokens.")
    logprobs: bool = Field(False, description="Return logprobs of the chosen tokens.")
    top_logprobs: int | None = Field(None, description="Also the top-N alternatives.")
    add_generation_prompt: bool = Field(True, description="End with the assistant's turn.")


class LoadLoraAdapterRequest(BaseModel):
    """POST /v1/load_lora_adapter (vLLM body)."""

    lora_name: str = Field(description="The adapter's name, used as `model` in requests.")
    lora_path: str = Field(description="A PEFT adapter directory under a configured root.")
    load_inplace: bool = Field(
        False,
        description="Replace an adapter of this name (a new version; running "
        "requests finish on the old one). Without it, a loaded name is a 400.",
    )


class UnloadLoraAdapterRequest(BaseModel):
    """POST /v1/unload_lora_adapter (vLLM body)."""

    lora_name: str = Field(description="The adapter to unload from every replica.")
    lora_int_id: int | None = Field(None, description="Ignored (vLLM compatibility).")


class TokenizeRequest(BaseModel):
    """POST /tokenize (vLLM body): a prompt, or chat messages through the template."""

    model: str | None = Field(None, description="Optional; the base model or an adapter.")
    prompt: str | None = Field(None, description="Text to tokenize.")
    messages: list[ChatMessage] | None = Field(None, description="Chat messages to render.")
    add_generation_prompt: bool = Field(True, description="With messages: end with the reply.")
    add_special_tokens: bool = Field(True, description="With prompt: add BOS and the like.")
    return_token_strs: bool = Field(False, description="Also each token's text.")


class DetokenizeRequest(BaseModel):
    """POST /detokenize (vLLM body)."""

    model: str | None = Field(None, description="Optional; the base model or an adapter.")
    tokens: list[int] = Field(description="Token ids to turn into text.")
