"""Peak memory of the astronomy pipeline as the number of visits grows.

For each number of visits, a synthetic survey is generated once (visit ``v`` is
the same whatever the number of visits) and the pipeline is run on a fresh
``distributed.LocalCluster``, in a fresh Python process, while a background
thread samples the resident memory (RSS) of the driver (which also hosts the
scheduler and the nannies) and of every worker process. Samples are split into
phase 1 (calibrating the exposures) and phase 2 (sky map, co-addition,
detection, catalogs) at the moment the last exposure is committed.

Usage::

    python benchmarks/astro_memory.py --visits 2,4,8,16,24 --ccds 4 \\
        --ccd-shape 256 256 --workers 2 --out bench-astro

Writes ``OUT/results.json``, ``OUT/results.md`` (the table, also printed),
``OUT/memory_vs_visits.png`` and ``OUT/timeline.png``; the surveys are cached
under ``OUT/data/visits-N`` and the per-run samples under ``OUT/runs``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

MiB = 2**20
SEED = 0
INTERVAL = 0.05  # seconds between RSS samples

# Libraries a worker imports to run the pipeline: imported before measuring the
# idle baseline, so that the increase over it is data and not code.
WORKER_IMPORTS = (
    "astropy.io.fits",
    "astropy.wcs",
    "astroscrappy",
    "reproject",
    "scipy.ndimage",
    "sep",
    "zarr",
    "sciimg.astro",
    "sciimg.io",
    "sciimg.pipeline",
)


# --------------------------------------------------------------------------- data


def ensure_survey(root: Path, visits: int, ccds: int, shape: tuple[int, int]) -> Path:
    """The survey of ``visits`` visits under ``root``, generated once."""
    from sciimg.synth import write_astro_survey

    path = root / f"visits-{visits}"
    marker = root / f"visits-{visits}.json"
    params = {"visits": visits, "ccds": ccds, "ccd_shape": list(shape), "seed": SEED}
    have = sorted(path.glob("visit-*/ccd-*.fits")) if path.is_dir() else []
    if (
        marker.exists()
        and json.loads(marker.read_text()) == params
        and len(have) == visits * ccds
    ):
        return path
    root.mkdir(parents=True, exist_ok=True)
    write_astro_survey(
        path, visits=visits, ccds=ccds, ccd_shape=shape, seed=SEED, overwrite=True
    )
    marker.write_text(json.dumps(params) + "\n")
    return path


def write_config(
    path: Path, data: Path, output: Path, workers: int, block: int | None = None
) -> Path:
    """A config like ``pipelines/astro/demo.yaml``, for this survey."""
    import yaml

    coadd = {"nsigma": 3.0, "iterations": 2}
    if block:
        coadd["block"] = block
    cfg = {
        "pipeline": "astro",
        "input": {"path": str(data)},
        "output": str(output),
        "steps": {
            "calibrate": {},
            "skymap": {"patch_size": 300, "border": 30},
            "coadd": coadd,
            "detect": {"threshold": 5.0},
        },
        "cluster": {
            "n_workers": workers,
            "threads_per_worker": 1,
            "dashboard_address": ":0",
            "memory_limit": "4GB",
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ------------------------------------------------------------------- measurement


class RssSampler:
    """Samples the RSS of the driver and of given worker processes in a thread."""

    def __init__(self, worker_pids: list[int], interval: float = INTERVAL):
        self.driver = psutil.Process()
        self.workers = [psutil.Process(pid) for pid in worker_pids]
        self.interval = interval
        # (time, driver, sum of workers, largest worker, each worker)
        self.samples: list[tuple[float, int, int, int, list[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> tuple[float, int, int, int, list[int]]:
        each = []
        for proc in self.workers:
            try:
                each.append(proc.memory_info().rss)
            except psutil.Error:  # a worker that died (or was restarted)
                each.append(0)
        row = (
            time.perf_counter(),
            self.driver.memory_info().rss,
            sum(each),
            max(each, default=0),
            each,
        )
        self.samples.append(row)
        return row

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peaks(self, t0: float = -float("inf"), t1: float = float("inf")) -> dict:
        rows = [r for r in self.samples if t0 <= r[0] <= t1]
        if not rows:
            return {}
        return {
            "driver_mib": max(r[1] for r in rows) / MiB,
            "workers_sum_mib": max(r[2] for r in rows) / MiB,
            "worker_max_mib": max(r[3] for r in rows) / MiB,
            "samples": len(rows),
        }


class ScratchSampler:
    """Samples the bytes of the run's temporary warps (``.warps.tmp-*`` in the
    output folder) in a thread: the disk the co-addition uses instead of memory."""

    def __init__(self, output: Path, interval: float = 0.25):
        self.output, self.interval = Path(output), interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def size(self) -> int:
        total = 0
        for folder in self.output.glob(".warps.tmp-*"):
            for path in folder.rglob("*"):
                with contextlib.suppress(OSError):
                    total += path.stat().st_size
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.size())
            self._stop.wait(self.interval)

    def __enter__(self) -> ScratchSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def attribute_tasks(
    records: list[dict], sampler: RssSampler, workers: list[str], offset: float
) -> dict:
    """What ran while each worker's memory peaked, and RSS during each task kind.

    For every task (grouped by its name prefix) the largest RSS of its worker
    while it ran, and the largest rise over the sample just before it started.
    Tasks shorter than the sampling interval are not seen.
    """
    import bisect

    from dask.utils import key_split

    times = [r[0] + offset for r in sampler.samples]
    index = {addr: i for i, addr in enumerate(workers)}
    running: list[list[tuple[float, float, str]]] = [[] for _ in workers]
    kinds: dict[str, dict] = {}
    for rec in records:
        w = index.get(rec.get("worker"))
        if w is None:
            continue
        name = key_split(rec["key"])
        for ss in rec.get("startstops", ()):
            if ss.get("action") != "compute":
                continue
            running[w].append((ss["start"], ss["stop"], name))
            i0 = bisect.bisect_left(times, ss["start"])
            i1 = bisect.bisect_right(times, ss["stop"])
            k = kinds.setdefault(
                name, {"tasks": 0, "seconds": 0.0, "rss_mib": 0.0, "rise_mib": 0.0}
            )
            k["tasks"] += 1
            k["seconds"] += ss["stop"] - ss["start"]
            if i1 <= i0:
                continue
            before = sampler.samples[max(i0 - 1, 0)][4][w]
            during = max(sampler.samples[i][4][w] for i in range(i0, i1))
            k["rss_mib"] = max(k["rss_mib"], during / MiB)
            k["rise_mib"] = max(k["rise_mib"], (during - before) / MiB)
    at_peak = []
    for w in range(len(workers)):
        i = max(range(len(times)), key=lambda j: sampler.samples[j][4][w])
        t = times[i]
        names = sorted({n for a, b, n in running[w] if a <= t <= b})
        at_peak.append(
            {"rss_mib": sampler.samples[i][4][w] / MiB, "running": names or None}
        )
    for k in kinds.values():
        k["seconds"] = round(k["seconds"], 2)
        k["rss_mib"] = round(k["rss_mib"], 1)
        k["rise_mib"] = round(k["rise_mib"], 1)
    top = dict(sorted(kinds.items(), key=lambda kv: -kv[1]["rss_mib"]))
    return {"at_worker_peak": at_peak, "by_kind": top}


def source_digest() -> str:
    """A digest of sciimg's source, to tie figures to one version of the code."""
    import hashlib

    import sciimg

    root = Path(sciimg.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _import_all(names) -> None:
    import importlib

    for name in names:
        importlib.import_module(name)
    gc.collect()


def _idle(client, pids: dict[str, int]) -> dict:
    """RSS of the idle workers (after a short settle) and of the driver."""
    time.sleep(1.0)
    rss = [psutil.Process(pid).memory_info().rss for pid in pids.values()]
    return {
        "driver_mib": psutil.Process().memory_info().rss / MiB,
        "workers_sum_mib": sum(rss) / MiB,
        "worker_max_mib": max(rss) / MiB,
        "workers_mib": [r / MiB for r in rss],
    }


def run_once(visits: int, config: Path, out_json: Path) -> dict:
    """Run the pipeline once on a fresh cluster, measuring; save and return."""
    from distributed import Client, LocalCluster, get_task_stream
    from distributed.diagnostics import MemorySampler

    from sciimg.pipeline import load_config, run_pipeline

    digest = source_digest()
    cfg = load_config(config)
    shutil.rmtree(cfg.output, ignore_errors=True)
    cc = cfg.cluster
    with (
        LocalCluster(
            n_workers=cc.n_workers,
            threads_per_worker=cc.threads_per_worker,
            memory_limit=cc.memory_limit,
            processes=True,
            dashboard_address=cc.dashboard_address,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(cc.n_workers)
        pids = client.run(os.getpid)
        idle_bare = _idle(client, pids)
        client.run(_import_all, WORKER_IMPORTS)
        _import_all(WORKER_IMPORTS)
        idle = _idle(client, pids)

        marks: list[tuple[float, str]] = []

        def log(message: str) -> None:
            marks.append((time.perf_counter(), str(message)))

        ms = MemorySampler()
        cpu0 = {"driver": _cpu_seconds(), **client.run(_cpu_seconds)}
        with (
            ScratchSampler(cfg.output) as scratch,
            RssSampler(list(pids.values())) as sampler,
            ms.sample("process", client=client, measure="process", interval=0.25),
            ms.sample("managed", client=client, measure="managed", interval=0.25),
            get_task_stream(client) as stream,
        ):
            t0 = time.perf_counter()
            report = run_pipeline(cfg, force=True, client=client, log=log)
            t1 = time.perf_counter()
        cpu1 = {"driver": _cpu_seconds(), **client.run(_cpu_seconds)}
        pids_after = client.run(os.getpid)
    # Wall-clock time of perf_counter's zero: task stream and MemorySampler
    # timestamps are time.time().
    offset = time.time() - time.perf_counter()
    tasks = attribute_tasks(stream.data, sampler, list(pids), offset)

    # Phase boundary: the last message before the first patch's (that is, the
    # last exposure committed); phase 2 then opens the calibrated exposures,
    # lays the sky map, builds and computes the patches.
    first_patch = min((t for t, m in marks if m.startswith("patch-")), default=None)
    before = [t for t, _ in marks if first_patch is not None and t < first_patch]
    split = max(before) if before else t1
    subjects = report.subjects
    exposures = [s for s in subjects if s.kind == "exposure"]
    patches = [s for s in subjects if s.kind == "patch"]
    steps: dict[str, dict[str, float]] = {}
    for s in subjects:
        for name, st in (s.steps or {}).items():
            agg = steps.setdefault(name, {"compute_s": 0.0, "tasks": 0})
            agg["compute_s"] += st.get("compute_s", 0.0)
            agg["tasks"] += st.get("tasks", 0)
    whole = sampler.peaks(t0, t1)
    result = {
        "visits": visits,
        "source_digest": digest,
        "phase_split_found": bool(before),
        "exposures": len(exposures),
        "patches": len(patches),
        "sources": report.summary.get("sources"),
        "failed": sum(s.status == "failed" for s in subjects),
        "wall_s": t1 - t0,
        # Driver (with the scheduler) and workers, while the run computed.
        "cpu_s": sum(cpu1[k] - cpu0[k] for k in cpu0 if k in cpu1),
        "scratch_peak_mib": scratch.peak / MiB,
        "phase1_s": split - t0,
        "phase2_s": t1 - split,
        "idle_bare": idle_bare,
        "idle": idle,
        "peak": whole,
        "increase": {
            "workers_sum_mib": whole["workers_sum_mib"] - idle["workers_sum_mib"],
            "worker_max_mib": whole["worker_max_mib"] - idle["worker_max_mib"],
            "driver_mib": whole["driver_mib"] - idle["driver_mib"],
        },
        "phase1": sampler.peaks(t0, split),
        "phase2": sampler.peaks(split, t1),
        "memory_sampler_peak_mib": {
            k: max((v for _, v in s), default=0) / MiB for k, s in ms.samples.items()
        },
        "managed_peak_mib": {
            phase: max(
                (v for t, v in ms.samples["managed"] if a <= t - offset <= b),
                default=0,
            )
            / MiB
            for phase, (a, b) in (("phase1", (t0, split)), ("phase2", (split, t1)))
        },
        "workers_restarted": sorted(pids.values()) != sorted(pids_after.values()),
        "failed_items": sorted(s.id for s in subjects if s.status == "failed"),
        "tasks": tasks,
        "steps": {
            k: {"compute_s": round(v["compute_s"], 2), "tasks": int(v["tasks"])}
            for k, v in steps.items()
        },
        "timeline": {
            "t": [round(r[0] - t0, 3) for r in sampler.samples],
            "driver_mib": [round(r[1] / MiB, 1) for r in sampler.samples],
            "workers_mib": [[round(x / MiB, 1) for x in r[4]] for r in sampler.samples],
            "split_s": split - t0,
            "marks": [(round(t - t0, 3), m) for t, m in marks],
            "managed": [
                (round(t - offset - t0, 3), round(v / MiB, 1))
                for t, v in ms.samples["managed"]
            ],
        },
    }
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result) + "\n")
    return result


# ---------------------------------------------------------------------- reports


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


# -------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", default="2,4,8,16,24", help="e.g. 2,4,8,16,24")
    parser.add_argument("--ccds", type=int, default=4)
    parser.add_argument(
        "--ccd-shape", type=int, nargs=2, default=(256, 256), metavar=("H", "W")
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-astro"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--block", type=int, default=None, help="steps.coadd.block (default: unset)"
    )
    # Internal: measure one run in this process (the driver must start fresh).
    parser.add_argument("--one", nargs=3, metavar=("VISITS", "CONFIG", "JSON"))
    args = parser.parse_args(argv)

    if args.one:
        visits, config, out_json = args.one
        run_once(int(visits), Path(config), Path(out_json))
        return

    out = args.out.resolve()
    counts = [int(v) for v in args.visits.split(",") if v.strip()]
    shape = tuple(args.ccd_shape)
    runs: dict[int, list[dict]] = {}
    digest = source_digest()
    for n in counts:
        data = ensure_survey(out / "data", n, args.ccds, shape)
        config = write_config(
            out / "configs" / f"visits-{n}.yaml",
            data,
            out / "output" / f"visits-{n}",
            args.workers,
            args.block,
        )
        for k in range(args.repeat):
            out_json = out / "runs" / f"visits-{n}-{k}.json"
            subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--one",
                    str(n),
                    str(config),
                    str(out_json),
                ],
                check=True,
            )
            r = json.loads(out_json.read_text())
            runs.setdefault(n, []).append(r)
            if r["source_digest"] != digest or not r["phase_split_found"]:
                print(
                    "warning: sciimg's source changed during the sweep"
                    if r["source_digest"] != digest
                    else "warning: phases not found in the log; whole run only",
                    flush=True,
                )
            print(
                f"{n:>3} visits, run {k + 1}/{args.repeat}: {r['wall_s']:.1f} s, "
                f"peak workers {r['peak']['workers_sum_mib']:.0f} MiB "
                f"(largest {r['peak']['worker_max_mib']:.0f}), "
                f"driver {r['peak']['driver_mib']:.0f} MiB",
                flush=True,
            )
    rows = [summarise(runs[n]) for n in counts]
    digests = {digest} | {r["source_digest"] for rs in runs.values() for r in rs}
    digests = sorted(digests)
    results = {
        "machine": machine(),
        "sciimg_source_digest": digests[0] if len(digests) == 1 else digests,
        "settings": {
            "visits": counts,
            "ccds": args.ccds,
            "ccd_shape": list(shape),
            "seed": SEED,
            "workers": args.workers,
            "threads_per_worker": 1,
            "memory_limit": "4GB",
            "patch_size": 300,
            "border": 30,
            "coadd_block": args.block,
            "repeat": args.repeat,
            "sample_interval_s": INTERVAL,
        },
        "results": rows,
        "runs": {
            str(n): [{k: v for k, v in r.items() if k != "timeline"} for r in rs]
            for n, rs in runs.items()
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = table(rows)
    (out / "results.md").write_text(md + "\n")
    plot(rows, runs, out)
    print(md)


if __name__ == "__main__":
    main()
