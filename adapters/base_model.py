"""BaseModelShape: the base model's dimensions that LoRA weights are checked and sized by.

workers.models.model_config.ModelConfig satisfies it; adapters/ never imports workers/.
"""

from __future__ import annotations

from typing import Protocol


class BaseModelShape(Protocol):
    @property
    def num_hidden_layers(self) -> int: ...

    @property
    def hidden_size(self) -> int: ...

    @property
    def intermediate_size(self) -> int: ...

    @property
    def num_attention_heads(self) -> int: ...

    @property
    def num_key_value_heads(self) -> int: ...

    @property
    def head_dim(self) -> int: ...
