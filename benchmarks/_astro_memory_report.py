"""The report of the astronomy memory sweep (``astro_memory.py``): the machine,
the medians over repeats, the Markdown table and the figures."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from pathlib import Path

import psutil


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for pkg in ("sciimg", "dask", "distributed", "numpy", "reproject", "psutil"):
        with contextlib.suppress(PackageNotFoundError):
            versions[pkg] = version(pkg)
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "versions": versions,
    }


def summarise(runs: list[dict]) -> dict:
    """Median over repeats of each figure of one visit count."""

    def med(get) -> float | None:
        values = []
        for r in runs:
            with contextlib.suppress(KeyError, TypeError):
                values.append(get(r))
        return round(statistics.median(values), 1) if values else None

    return {
        "visits": runs[0]["visits"],
        "exposures": runs[0]["exposures"],
        "patches": runs[0]["patches"],
        "sources": runs[0]["sources"],
        "failed": f"{max(r['failed'] for r in runs)}/{runs[0]['exposures']}",
        "repeats": len(runs),
        "wall_s": med(lambda r: r["wall_s"]),
        "wall_min_s": round(min(r["wall_s"] for r in runs), 1),
        "wall_max_s": round(max(r["wall_s"] for r in runs), 1),
        "phase1_s": med(lambda r: r["phase1_s"]),
        "phase2_s": med(lambda r: r["phase2_s"]),
        "cpu_s": med(lambda r: r["cpu_s"]),
        "scratch_peak_mib": med(lambda r: r["scratch_peak_mib"]),
        "idle_workers_sum_mib": med(lambda r: r["idle"]["workers_sum_mib"]),
        "idle_bare_workers_sum_mib": med(lambda r: r["idle_bare"]["workers_sum_mib"]),
        "peak_workers_sum_mib": med(lambda r: r["peak"]["workers_sum_mib"]),
        "peak_worker_max_mib": med(lambda r: r["peak"]["worker_max_mib"]),
        "increase_workers_sum_mib": med(lambda r: r["increase"]["workers_sum_mib"]),
        "increase_worker_max_mib": med(lambda r: r["increase"]["worker_max_mib"]),
        "peak_driver_mib": med(lambda r: r["peak"]["driver_mib"]),
        "increase_driver_mib": med(lambda r: r["increase"]["driver_mib"]),
        "phase1_worker_max_mib": med(lambda r: r["phase1"]["worker_max_mib"]),
        "phase2_worker_max_mib": med(lambda r: r["phase2"]["worker_max_mib"]),
        "phase1_driver_mib": med(lambda r: r["phase1"]["driver_mib"]),
        "phase2_driver_mib": med(lambda r: r["phase2"]["driver_mib"]),
        "sampler_process_mib": med(lambda r: r["memory_sampler_peak_mib"]["process"]),
        "sampler_managed_mib": med(lambda r: r["memory_sampler_peak_mib"]["managed"]),
        "phase1_managed_mib": med(lambda r: r["managed_peak_mib"]["phase1"]),
        "phase2_managed_mib": med(lambda r: r["managed_peak_mib"]["phase2"]),
        "task_rise_mib": med(lambda r: _largest_rise(r)[1]),
        "task_rise_kind": _largest_rise(runs[0])[0],
        "failed_items": sorted({i for r in runs for i in r["failed_items"]}),
    }


def _largest_rise(run: dict) -> tuple[str, float]:
    """The task kind whose run raised its worker's RSS the most, and by how much."""
    kinds = run["tasks"]["by_kind"]
    if not kinds:
        return "", 0.0
    name = max(kinds, key=lambda k: kinds[k]["rise_mib"])
    return name, kinds[name]["rise_mib"]


COLUMNS = (
    ("visits", "Visits"),
    ("exposures", "Exposures"),
    ("failed", "Failed"),
    ("sources", "Sources"),
    ("wall_s", "Wall (s)"),
    ("phase1_s", "Phase 1 (s)"),
    ("phase2_s", "Phase 2 (s)"),
    ("cpu_s", "CPU (s)"),
    ("idle_workers_sum_mib", "Workers Σ idle"),
    ("peak_workers_sum_mib", "Workers Σ peak"),
    ("increase_workers_sum_mib", "Σ increase"),
    ("phase1_worker_max_mib", "One worker peak, phase 1"),
    ("phase2_worker_max_mib", "One worker peak, phase 2"),
    ("task_rise_mib", "Largest rise in one task"),
    ("phase1_managed_mib", "Dask-managed Σ, phase 1"),
    ("phase2_managed_mib", "Dask-managed Σ, phase 2"),
    ("peak_driver_mib", "Driver peak"),
    ("scratch_peak_mib", "Warps on disk, peak"),
)


def table(rows: list[dict]) -> str:
    """The figures as a Markdown table (memory in MiB, medians over repeats)."""
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in COLUMNS) + "|"
    body = []
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            value = row[key]
            if key == "wall_s" and row["repeats"] > 1:
                cells.append(
                    f"{value:.0f} ({row['wall_min_s']:.0f}–{row['wall_max_s']:.0f})"
                )
            elif value is None:
                cells.append("–")
            elif isinstance(value, float):
                cells.append(f"{value:.0f}")
            else:
                cells.append(str(value))
        body.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nMemory in MiB of resident set size (RSS); Σ: summed over the workers; "
        f"median of {rows[0]['repeats']} run(s) per row"
        + (" (wall time: median, min–max)." if rows[0]["repeats"] > 1 else ".")
    )
    return "\n".join([head, rule, *body, note])


def plot(rows: list[dict], runs: dict[int, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    visits = [r["visits"] for r in rows]
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = (
        ("peak_workers_sum_mib", "workers, sum", "o-"),
        ("peak_worker_max_mib", "largest worker", "s-"),
        ("peak_driver_mib", "driver + scheduler", "^-"),
        ("idle_workers_sum_mib", "workers idle, sum", "o:"),
        ("task_rise_mib", "largest rise in one task", "d--"),
        ("phase2_managed_mib", "Dask-managed data, sum", "v:"),
    )
    for key, label, style in series:
        ax.plot(visits, [r[key] for r in rows], style, label=label)
    ax.set_xlabel("visits")
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_xticks(visits)
    ax.set_title("Peak memory vs visits")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax_t.errorbar(
        visits,
        [r["wall_s"] for r in rows],
        yerr=[
            [r["wall_s"] - r["wall_min_s"] for r in rows],
            [r["wall_max_s"] - r["wall_s"] for r in rows],
        ],
        fmt="o-",
        capsize=3,
        label="whole run (median, min–max)",
    )
    ax_t.plot(visits, [r["phase1_s"] for r in rows], "s--", label="phase 1")
    ax_t.plot(visits, [r["phase2_s"] for r in rows], "^--", label="phase 2")
    ax_t.set_xlabel("visits")
    ax_t.set_ylabel("wall time (s)")
    ax_t.set_ylim(bottom=0)
    ax_t.set_xticks(visits)
    ax_t.set_title("Wall time vs visits (medians)")
    ax_t.legend(fontsize=8)
    ax_t.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "memory_vs_visits.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(
        len(runs), 1, figsize=(9, 1.9 * len(runs) + 0.6), sharey=True, squeeze=False
    )
    for ax, (n, rs) in zip(axes[:, 0], sorted(runs.items()), strict=True):
        tl = rs[0]["timeline"]
        ax.plot(tl["t"], tl["driver_mib"], color="k", lw=1, label="driver")
        for w, values in enumerate(zip(*tl["workers_mib"], strict=True)):
            ax.plot(tl["t"], values, lw=1, label=f"worker {w}")
        if tl.get("managed"):
            tm, vm = zip(*tl["managed"], strict=True)
            ax.plot(tm, vm, color="grey", lw=1, ls=":", label="Dask-managed, Σ")
        ax.axvline(tl["split_s"], color="grey", ls="--", lw=1)
        ax.set_ylabel(f"{n} visits\nRSS (MiB)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper left", ncol=4)
    axes[0, 0].set_title("RSS over time (dashed: phase 1 | phase 2)")
    axes[-1, 0].set_xlabel("seconds since the run started")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=100)
    plt.close(fig)
