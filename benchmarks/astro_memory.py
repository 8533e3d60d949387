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
import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from _astro_memory_data import SEED, ensure_survey, write_config
from _astro_memory_report import machine, plot, summarise, table
from _astro_memory_samplers import (
    INTERVAL,
    MiB,
    RssSampler,
    ScratchSampler,
    attribute_tasks,
)

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


# The functions the workers run (client.run) are defined in this script, so that
# they are sent to them by value and the workers need not import its siblings.


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


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
