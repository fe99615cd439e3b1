"""User messages for the real model's parity test, samples and benchmarks (written for this
project: everyday questions, short tasks and a little code, as a new user would ask)."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

CHAT_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Write a struct in C for a 2D point.",
    "Give me three tips for sleeping better.",
    "What is 12 times 7?",
    "Translate 'good morning' into Spanish.",
    "Write a Python function that reverses a string.",
    "Why is the sky blue?",
    "Name the planets of the solar system.",
    "What does HTTP stand for?",
    "Write a haiku about autumn.",
    "How do I boil an egg?",
    "Explain what a linked list is in one sentence.",
    "What is the boiling point of water in Fahrenheit?",
    "Suggest a name for a pet turtle.",
    "Who wrote Romeo and Juliet?",
    "What is the difference between a list and a tuple in Python?",
    "Give me a synonym for 'happy'.",
    "How many legs does a spider have?",
    "Write a SQL query that counts the rows of a table named users.",
    "What is photosynthesis?",
)


def chat_prompt_ids(tokenizer: PreTrainedTokenizerBase, message: str) -> list[int]:
    """One user turn through the model's chat template, ready for the assistant's answer
    (the template writes its own special tokens, so none are added on top)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False).input_ids
