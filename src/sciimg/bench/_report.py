"""Benchmark results as JSON, a Markdown table and PNG plots (as the paper's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLOURS = {
    "dask": "#1f77b4",
    "spark": "#ff7f0e",
    "relational": "#2ca02c",
    "serial": "#7f7f7f",
}


def _verdict(run: dict[str, Any]) -> str:
    if not run["ok"]:
        return f"failed: {run['error']}"
    if run.get("reference"):
        return "reference"
    agreement = run.get("agreement")
    if agreement is None:
        return "not compared"
    if agreement["agree"]:
        return "yes"
    return "**no**: " + "; ".join(agreement["problems"])


def markdown(results: dict[str, Any]) -> str:
    """The results table, one row per run."""
    unit = results["unit"]
    steps = results["steps"]
    head = ["engine", unit, "workers", "wall (s)", "CPU (s)", "peak memory (MiB)"]
    head += [f"{s} (s)" for s in steps] + ["agrees with serial"]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|",
    ]
    for r in results["runs"]:
        cells = [r["engine"], str(r["count"]), str(r["workers"])]
        if r["ok"]:
            cells += [f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}"]
            cells.append(f"{r['peak_rss_mib']:.0f}")
            cells += [f"{r['steps'][s]:.2f}" if s in r["steps"] else "–" for s in steps]
        else:
            cells += ["–"] * (3 + len(steps))
        cells.append(_verdict(r))
        lines.append("| " + " | ".join(cells) + " |")
    m = results["machine"]
    lines += [
        "",
        f"{results['pipeline']} at size `{results['size']}` "
        f"({', '.join(f'{k}={v}' for k, v in results['size_spec'].items())}); "
        f"{m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, "
        f"Python {m['python']}.",
        "Wall, CPU and peak memory are of the whole process tree of a fresh "
        "process per run (engine start-up included); step times are seconds of "
        "wall time between barriers, except for dask, whose steps overlap: its "
        "step time is task seconds divided by worker threads. Native thread "
        "pools (OpenMP, BLAS) are limited to one thread per worker, so the "
        "workers are each engine's only parallelism.",
    ]
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out: Path) -> None:
    """Write ``results.json``, ``results.md`` and the plots under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown(results))
    plot_steps(results, out / "steps.png")
    plot_scaling(results, out / "scaling.png")


def _ok(results):
    return [r for r in results["runs"] if r["ok"]]


def plot_steps(results: dict[str, Any], path: Path) -> Path | None:
    """Per-step bars per engine, at the largest count and worker number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = _ok(results)
    if not runs:
        return None
    count = max(r["count"] for r in runs)
    chosen = []
    for engine in results["engines"]:
        mine = [r for r in runs if r["engine"] == engine and r["count"] == count]
        if mine:
            chosen.append(max(mine, key=lambda r: r["workers"]))
    steps = results["steps"]
    width = 0.8 / max(1, len(chosen))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(steps), 3.6))
    x = np.arange(len(steps))
    for i, r in enumerate(chosen):
        ax.bar(
            x + (i - (len(chosen) - 1) / 2) * width,
            [r["steps"].get(s, 0.0) for s in steps],
            width,
            label=f"{r['engine']} ({r['workers']} w.)",
            color=COLOURS.get(r["engine"]),
        )
    unit = results["unit"]
    ax.set_xticks(x, steps)
    ax.set_ylabel("seconds")
    ax.set_title(f"{results['pipeline']} {results['size']}, {count} {unit}: per step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scaling(results: dict[str, Any], path: Path) -> Path | None:
    """Wall time against subjects/visits, one line per engine and worker number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _ok(results)
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for engine in results["engines"]:
        for w in sorted({r["workers"] for r in runs if r["engine"] == engine}):
            mine = sorted(
                (r for r in runs if r["engine"] == engine and r["workers"] == w),
                key=lambda r: r["count"],
            )
            ax.plot(
                [r["count"] for r in mine],
                [r["wall_s"] for r in mine],
                marker="o",
                linestyle="-" if w == max(results["workers"]) else "--",
                color=COLOURS.get(engine),
                label=f"{engine}, {w} worker{'s' if w > 1 else ''}",
            )
    unit = results["unit"]
    ax.set_xlabel(unit)
    ax.set_ylabel("wall time (s)")
    ax.set_title(f"{results['pipeline']} {results['size']}: end to end")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
