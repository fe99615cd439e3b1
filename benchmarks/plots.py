"""SVG bar charts of the GPU benchmark results, hand-written so that nothing new is needed.

    python -m benchmarks.plots

Reads benchmarks/results/*.json and writes decode_step.svg, serving.svg, spec_oracle.svg and
quant.svg to benchmarks/results/plots/.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PLOTS = RESULTS / "plots"
SUITE_RUNS = {
    "v1": "gpu_suite.json",
    "v2": "gpu_suite_v2.json",
    "v3": "gpu_suite_v3.json",
    "v4": "gpu_suite_v4.json",
    "v5": "gpu_suite_v5.json",
    "v6": "gpu_suite_v6.json",
    "v7 (H200)": "gpu_suite_v7.json",
    "v8 (H200)": "gpu_suite_v8.json",
    "8B (H200)": "gpu_suite_8b.json",
}
WIDTH, HEIGHT = 640, 360
FONT = "font-family='Helvetica, Arial, sans-serif'"
REF = "stroke='#333' stroke-width='1.5' stroke-dasharray='5 3'"
BLUE, ORANGE, GREY, GREEN = "#4c78a8", "#f58518", "#9d9d9d", "#54a24b"


@dataclass(frozen=True)
class Series:
    """One bar per group; `refs` puts a dashed mark across each bar (a per-run floor)."""

    name: str
    values: list[float]
    color: str
    refs: list[float] | None = None
    ref_label: str = ""


@dataclass(frozen=True)
class Chart:
    title: str
    subtitle: str
    ylabel: str
    groups: list[str]
    series: list[Series]
    lines: Sequence[tuple[float, str]] = ()  # full-width dashed lines: (value, legend label)
    fmt: Callable[[float], str] = lambda v: short(v)


@dataclass(frozen=True)
class Frame:
    """The plot area: left, top, width, height in pixels and the value at its top edge."""

    x: float
    y: float
    w: float
    h: float
    top: float

    def at(self, value: float) -> float:
        return self.y + self.h - self.h * value / self.top


def short(value: float) -> str:
    """A number in at most four or five characters: 0.75, 4.56, 24.2, 978, 11.4k."""
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}".rstrip("0").rstrip(".") + "k"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def ticks(top: float) -> list[float]:
    """Round axis ticks from 0 up past `top`, about five of them."""
    raw = top / 5 if top > 0 else 1.0
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def text(x: float, y: float, s: str, size: int = 11, **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}='{v}'" for k, v in attrs.items())
    return f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}'{extra}>{escape(s)}</text>"


def hline(x1: float, x2: float, y: float, style: str = REF) -> str:
    return f"<line x1='{x1:.1f}' y1='{y:.1f}' x2='{x2:.1f}' y2='{y:.1f}' {style}/>"


def rect(x: float, y: float, w: float, h: float, color: str) -> str:
    return f"<rect x='{x:.1f}' y='{y:.1f}' width='{w:.1f}' height='{h:.1f}' fill='{color}'/>"


def legend(chart: Chart, x: float, y: float) -> list[str]:
    """Coloured squares for the series, a dashed sample for each reference label."""
    items = [(s.name, s.color) for s in chart.series if len(chart.series) > 1]
    refs = [s.ref_label for s in chart.series if s.refs] + [label for _, label in chart.lines]
    out: list[str] = []
    for name, color in items:
        out += [rect(x, y - 9, 10, 10, color), text(x + 14, y, name, fill="#333")]
        x += 24 + 6 * len(name)
    for label in dict.fromkeys(refs):
        out += [hline(x, x + 18, y - 4), text(x + 22, y, label, fill="#333")]
        x += 32 + 6 * len(label)
    return out


def axes(chart: Chart, f: Frame) -> list[str]:
    """Title, subtitle, legend, y grid with tick labels, rotated y label and the x baseline."""
    out = [
        text(f.x, 22, chart.title, 15, font_weight="bold", fill="#111"),
        text(f.x, 39, chart.subtitle, 11, fill="#666"),
        *legend(chart, f.x, 57),
    ]
    for t in ticks(f.top):
        out.append(hline(f.x, f.x + f.w, f.at(t), "stroke='#e5e5e5'"))
        out.append(
            text(f.x - 6, f.at(t) + 4, short(t) if t >= 1000 else f"{t:g}", 10, text_anchor="end")
        )
    ly, lx = f.y + f.h / 2, f.x - 40
    rot = f"rotate(-90 {lx:.1f} {ly:.1f})"
    out.append(text(lx, ly, chart.ylabel, 11, text_anchor="middle", fill="#333", transform=rot))
    return [*out, hline(f.x, f.x + f.w, f.y + f.h, "stroke='#333'")]


def bar(f: Frame, x: float, w: float, value: float, color: str, label: str) -> list[str]:
    """One bar with its value printed just above it (white halo so dashed lines don't hide it)."""
    halo = {"stroke": "#fff", "stroke_width": "3", "paint_order": "stroke"}
    y = f.at(value)
    return [
        rect(x + 1, y, w - 2, f.y + f.h - y, color),
        text(x + w / 2, y - 4, label, 10, text_anchor="middle", fill="#222", **halo),
    ]


def bar_chart(chart: Chart, left: float = 0, width: float = WIDTH) -> list[str]:
    """SVG elements for a grouped bar chart drawn in the horizontal slice [left, left + width)."""
    refs = [v for s in chart.series for v in s.refs or []] + [v for v, _ in chart.lines]
    bars = [v for s in chart.series for v in s.values]
    top = ticks(max(max(bars) * 1.1, max(refs, default=0) * 1.02))[-1]
    f = Frame(left + 58, 72, width - 72, HEIGHT - 72 - 34, top)
    out = axes(chart, f)
    group_w = f.w / len(chart.groups)
    bar_w = min(48.0, group_w * 0.8 / len(chart.series))
    for g, label in enumerate(chart.groups):
        gx = f.x + g * group_w + (group_w - bar_w * len(chart.series)) / 2
        out.append(text(f.x + (g + 0.5) * group_w, f.y + f.h + 16, label, text_anchor="middle"))
        for i, s in enumerate(chart.series):
            out += bar(f, gx + i * bar_w, bar_w, s.values[g], s.color, chart.fmt(s.values[g]))
        for i, s in enumerate(chart.series):
            if s.refs:
                x = gx + i * bar_w
                out.append(hline(x - 2, x + bar_w + 2, f.at(s.refs[g])))
    return out + [hline(f.x, f.x + f.w, f.at(v)) for v, _ in chart.lines]


def write_svg(name: str, parts: list[str]) -> Path:
    head = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' {FONT}>\n<rect width='100%' height='100%' fill='#fff'/>"
    )
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / name
    path.write_text("\n".join([head, *parts, "</svg>"]) + "\n")
    return path


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def suite_rows(*measures: str) -> dict[str, list[dict[str, Any]]]:
    """Per suite run, the rows named by `measures` (in that order); runs lacking any are skipped."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for run, name in SUITE_RUNS.items():
        rows = {r["measure"]: r for r in load(name)["rows"]}
        if all(m in rows for m in measures):
            runs[run] = [rows[m] for m in measures]
    return runs


def decode_step() -> Path:
    runs = suite_rows("decode step, batch 1, graphs", "decode step, batch 64, graphs")
    series = [
        Series(
            f"batch {batch}",
            [rows[i]["value"] for rows in runs.values()],
            color,
            [rows[i]["floor"] for rows in runs.values()],
            "memory floor (weights + KV bytes / bandwidth)",
        )
        for i, (batch, color) in enumerate([(1, BLUE), (64, ORANGE)])
    ]
    chart = Chart(
        "Decode step time, CUDA graphs",
        "1.1B Llama shape, bf16; v1-v6 one H100, v7, v8 and 8B one H200; lower is better",
        "ms per step",
        list(runs),
        series,
    )
    return write_svg("decode_step.svg", bar_chart(chart))


def serving() -> Path:
    runs = suite_rows("serving output tokens/s (tandem)")
    rows = [r[0] for r in runs.values()]
    tandem = Series(
        "Tandem",
        [r["value"] for r in rows],
        BLUE,
        [20 * r["floor"] for r in rows],
        "target: 20x transformers",
    )
    hf = Series("transformers, best static batch", [r["floor"] for r in rows], GREY)
    chart = Chart(
        "Serving throughput",
        "256 requests, prompts 128-1024, outputs 128-512; H100 to v6, then H200; higher is better",
        "output tokens/s",
        list(runs),
        [tandem, hf],
        fmt=lambda v: f"{v:.0f}",
    )
    return write_svg("serving.svg", bar_chart(chart))


def spec_oracle() -> Path:
    data = load("spec_oracle_gpu.json")
    rows = [r for r in data["rows"] if r["batch"] == 1]
    chart = Chart(
        "Speculative decoding speedup, batch 1",
        f"oracle draft at acceptance a, k = {data['k']}; 1.1B target, {data['hardware']}",
        "speedup (x)",
        [f"a = {r['a']}" for r in rows],
        [
            Series("measured", [r["speedup"] for r in rows], BLUE),
            Series("analytic", [r["analytic"] for r in rows], ORANGE),
        ],
        [(1.0, "1.0 = no speedup")],
    )
    return write_svg("spec_oracle.svg", bar_chart(chart))


def quant() -> Path:
    """Weight size and batch-1 step time per weight format, both without CUDA graphs."""
    results = load("gpu_quant.json")["results"]
    rows = [r for r in results if not r["cuda_graphs"]]
    graphs = [r for r in results if r["cuda_graphs"]]
    formats = [r["weights"] for r in rows]
    size = Chart(
        "Weight memory",
        "1.1B Llama shape, one H100",
        "MB",
        formats,
        [Series("weights", [r["weight_MB"] for r in rows], BLUE)],
        fmt=lambda v: f"{v:.0f}",
    )
    lines = [
        (r["step_ms_batch1"], f"{r['weights']} + CUDA graphs: {r['step_ms_batch1']:.2f} ms")
        for r in graphs
    ]
    step = Chart(
        "Decode step, batch 1",
        "no CUDA graphs; lower is better",
        "ms per step",
        formats,
        [Series("step", [r["step_ms_batch1"] for r in rows], GREEN)],
        lines,
    )
    half = WIDTH / 2
    return write_svg("quant.svg", bar_chart(size, 0, half) + bar_chart(step, half, half))


def main() -> None:
    for plot in (decode_step, serving, spec_oracle, quant):
        path = plot()
        print(f"{path.relative_to(RESULTS.parent.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
