"""The tandem: series out of Ray's Prometheus exports, named as the router records them.

Ray exports `tandem:x` as `ray_tandem_x` (it refuses ':' in names); GET /metrics gives the
same series under their own names, as vLLM serves `vllm:` ones on its API port."""

from __future__ import annotations

import re
from collections.abc import Iterable

_EXPORTED = re.compile(r"^(# (?:HELP|TYPE) )?ray_tandem_(\w+)(.*)$")


def tandem_series(exports: Iterable[str]) -> str:
    """Prometheus text of every ray_tandem_* sample in `exports` (one text per Ray node),
    renamed tandem:*; each HELP and TYPE line once."""
    seen_meta: set[str] = set()
    meta: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for text in exports:
        for line in text.splitlines():
            match = _EXPORTED.match(line)
            if match is None:
                continue
            prefix, name, rest = match.groups()
            family = _family(name)
            renamed = f"{prefix or ''}tandem:{name}{rest}"
            if prefix:
                if renamed not in seen_meta:
                    seen_meta.add(renamed)
                    meta.setdefault(family, []).append(renamed)
            else:
                samples.setdefault(family, []).append(renamed)
    lines: list[str] = []
    for family in sorted(set(meta) | set(samples)):
        lines += meta.get(family, []) + samples.get(family, [])
    return "\n".join(lines) + "\n" if lines else ""


def _family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
