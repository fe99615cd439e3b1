"""Chat-formatted training documents: "write this function" -> the function's source.

They teach the target the chat template's turn markers, so /v1/chat/completions answers with
code instead of noise. The user turn is the function's name plus the first paragraph of its
docstring; the assistant turn is the function itself, as it appears in the training files.
"""

from __future__ import annotations

import ast
import textwrap

from models.training.tokenizer_spec import render_chat_turns

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _summary(doc: str) -> str:
    first_paragraph = doc.strip().split("\n\n", 1)[0]
    return " ".join(first_paragraph.split())


def _source_lines(lines: list[str], node: FunctionNode) -> str:
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    assert node.end_lineno is not None
    return textwrap.dedent("\n".join(lines[first - 1 : node.end_lineno]))


def function_requests(source: str, max_chars: int) -> list[tuple[str, str, str]]:
    """(name, request, function source) for each documented function of at most max_chars."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    pairs = []
    for node in ast.walk(tree):
        if not isinstance(node, FunctionNode):
            continue
        doc = ast.get_docstring(node)
        if not doc:
            continue
        code = _source_lines(lines, node)
        if len(code) > max_chars:
            continue
        request = f"Write a Python function named {node.name}. {_summary(doc)}"
        pairs.append((node.name, request, code))
    return pairs


def chat_document(request: str, answer: str) -> str:
    """One training document in the chat template's format (BOS/EOS are added at encoding)."""
    return render_chat_turns([("user", request)], add_generation_prompt=True) + answer + "\n"
