"""The docstrings domain: Python modules' docstrings rendered as reStructuredText pages.

One page per module: the module docstring under an `=` title, then one `-` section per
documented class or function (signature as the heading). The stdlib's reference-manual topics
(pydoc_data) are pages too. The adapter trained on this learns to write documentation prose.
"""

from __future__ import annotations

import ast

DocumentedNode = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def _heading(title: str, underline: str) -> str:
    return f"{title}\n{underline * len(title)}\n"


def _node_title(node: DocumentedNode, qualname: str) -> str:
    if isinstance(node, ast.ClassDef):
        return f"class {qualname}"
    return f"{qualname}({ast.unparse(node.args)})"


def _documented(body: list[ast.stmt], prefix: str) -> list[tuple[str, str]]:
    """(heading, docstring) for every documented class and function, depth first."""
    sections: list[tuple[str, str]] = []
    for node in body:
        if not isinstance(node, DocumentedNode):
            continue
        qualname = f"{prefix}{node.name}"
        doc = ast.get_docstring(node)
        if doc:
            sections.append((_node_title(node, qualname), doc))
        if isinstance(node, ast.ClassDef):
            sections.extend(_documented(node.body, f"{qualname}."))
    return sections


def module_page(module: str, source: str) -> str | None:
    """The rst page of one module's docstrings, or None when it has none (or does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    parts = []
    module_doc = ast.get_docstring(tree)
    sections = _documented(tree.body, "")
    if not module_doc and not sections:
        return None
    parts.append(_heading(module, "="))
    if module_doc:
        parts.append(module_doc + "\n")
    for title, doc in sections:
        parts.append(_heading(title, "-"))
        parts.append(doc + "\n")
    return "\n".join(parts)


def pydoc_topic_pages(source: str) -> dict[str, str]:
    """Topic name -> rst page, from the source of pydoc_data/topics.py (a dict literal)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "topics" for t in node.targets
        ):
            topics = ast.literal_eval(node.value)
            return {name: _heading(name, "=") + "\n" + text for name, text in topics.items()}
    return {}
