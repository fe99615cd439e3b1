"""Where each training domain's files come from on the machine that runs the build.

Only trees that ship with any Linux machine that has Python: the standard library (its test
suite apart), the system C headers, and, as fallbacks where a distribution strips those, other
Python and C trees of the same interpreter. The manifest records which of them were used.
"""

from __future__ import annotations

import site
import sysconfig
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

TEST_DIR_NAMES = frozenset({"test", "tests", "idle_test"})
SKIPPED_DIR_NAMES = frozenset({"site-packages", "dist-packages", "__pycache__"})
# pydoc_data holds the reference manual as one big dict of prose: docstrings, not code.
PROSE_MODULES = frozenset({"pydoc_data"})
# Tables written by Tools/unicode/gencodec.py: ~70 near-identical files of numbers that would
# cost the small model capacity and make held-out loss look better than it is.
GENERATED_MARKERS = ("Python Character Mapping Codec",)


@dataclass(frozen=True)
class SourceTree:
    """A directory the corpus reads from: `label` names it in the manifest (e.g. "stdlib")."""

    label: str
    root: Path

    def files(self, suffix: str) -> list[Path]:
        """Every file under root with that suffix, sorted, skipping caches and installed packages
        when the tree is the standard library."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.rglob(f"*{suffix}"):
            rel_dirs = path.relative_to(self.root).parts[:-1]
            if self.label == "stdlib" and SKIPPED_DIR_NAMES.intersection(rel_dirs):
                continue
            if "__pycache__" in rel_dirs or not path.is_file():
                continue
            found.append(path)
        return sorted(found)

    def key(self, path: Path) -> str:
        """The file's name in the manifest and the split hash: "<label>/<path under root>"."""
        return f"{self.label}/{path.relative_to(self.root).as_posix()}"


def stdlib_tree() -> SourceTree:
    return SourceTree("stdlib", Path(sysconfig.get_paths()["stdlib"]))


def site_package_trees() -> list[SourceTree]:
    roots = sorted({Path(p) for p in site.getsitepackages()} | {Path(site.getusersitepackages())})
    return [SourceTree(f"site-packages[{i}]", root) for i, root in enumerate(roots)]


def c_header_trees() -> list[SourceTree]:
    """C header trees in order of preference; later ones only fill a shortfall of earlier ones."""
    python_include = Path(sysconfig.get_paths()["include"])
    return [
        SourceTree("usr-include", Path("/usr/include")),
        SourceTree("usr-local-include", Path("/usr/local/include")),
        SourceTree("python-include", python_include),
        SourceTree("cuda-include", Path("/usr/local/cuda/include")),
    ]


def is_test_path(relative: PurePosixPath) -> bool:
    return bool(TEST_DIR_NAMES.intersection(relative.parts[:-1])) or relative.name.startswith(
        "test_"
    )


def is_prose_path(relative: PurePosixPath) -> bool:
    return bool(relative.parts) and relative.parts[0] in PROSE_MODULES


def is_generated(text: str) -> bool:
    head = text[:2000]
    return any(marker in head for marker in GENERATED_MARKERS)


def module_name(relative: PurePosixPath) -> str:
    """Dotted module name of a stdlib file: json/decoder.py -> json.decoder, json/__init__.py ->
    json."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)
