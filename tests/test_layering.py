"""The packages' import layering, read from the source (ast): nothing is imported.

workers/ (the engine) may import adapters/; adapters/ never imports workers/; neither imports
Ray or the HTTP stack, so the engine runs, and is tested, without them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVING_FREE = ("ray", "fastapi", "starlette")


def imported_modules(path: Path, package: tuple[str, ...]) -> set[str]:
    """Every module a file imports, at any depth (function-level imports too), as absolute
    dotted names; a relative import is resolved against `package`, the file's package."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.add(".".join((*base, node.module or "")).rstrip("."))
            else:
                names.add(node.module or "")
    return names


def imports_of(package: str) -> dict[str, set[str]]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    return {
        str(f.relative_to(ROOT)): imported_modules(f, f.relative_to(ROOT).parent.parts)
        for f in files
    }


def offenders(package: str, banned: tuple[str, ...]) -> list[str]:
    return [
        f"{file} imports {name}"
        for file, names in imports_of(package).items()
        for name in sorted(names)
        if name.split(".")[0] in banned
    ]


def test_adapters_do_not_import_workers() -> None:
    assert offenders("adapters", ("workers",)) == []


@pytest.mark.parametrize("package", ["workers", "adapters"])
def test_engine_packages_import_neither_ray_nor_http(package: str) -> None:
    assert offenders(package, SERVING_FREE) == []


def test_the_walk_sees_nested_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "import ray.serve\n"
        "def f():\n"
        "    from workers.errors import EngineDeadError\n"
        "    from .weights import LoRAWeights\n"
        "    from .. import router\n"
    )
    assert imported_modules(source, ("adapters", "sub")) == {
        "ray.serve",
        "workers.errors",
        "adapters.sub.weights",
        "adapters",
    }
