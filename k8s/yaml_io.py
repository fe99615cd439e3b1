"""YAML out: keys in the order written, multi-line strings as literal blocks (so the
serveConfigV2 and dashboard JSON inside manifests stay readable and diffable)."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def dump_all(documents: list[Any], header: str) -> str:
    body = "---\n".join(dump(d) for d in documents)
    return "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body
