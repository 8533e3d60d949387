"""One HCP-size subject end to end through ``sciimg run``, on local workers.

The subject is the HCP-size phantom (``sciimg synth neuro --hcp``: 145×174×145
voxels at 1.25 mm, 288 volumes, about 4.2 GB as float32), written once into
``--data``. The run is the default neuro pipeline (mask, classic non-local means,
WLS tensor fit, FA/MD/mask exported) on ``--workers`` single-threaded workers,
started fresh with ``--force``. While it runs, a thread samples every process of
the run's tree; at the end the script prints:

* wall time, and CPU seconds of the whole tree and of the worker processes;
* each worker's peak resident memory;
* the compute seconds of each step (from the store's ``timings``) and its share;
* read throughput: the series' bytes over the read tasks' seconds.

Usage::

    python benchmarks/hcp_subject.py [--data bench-data] [--workers 2] \\
        [--implementation fast] [--device cpu] [--threads 1] [--out hcp.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

INTERVAL = 0.2  # seconds between samples


def _sciimg() -> list[str]:
    """The ``sciimg`` command of this Python (``python -m sciimg`` where the
    package is on the path but not installed)."""
    beside = Path(sys.executable).with_name("sciimg")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "sciimg"]


def _dataset(folder: Path) -> Path:
    if not (folder / ".complete").exists():
        subprocess.run(
            [
                *_sciimg(),
                "synth",
                "neuro",
                str(folder),
                "--hcp",
                "--subjects",
                "1",
                "--overwrite",
            ],
            check=True,
        )
        (folder / ".complete").touch()
    return folder


def _config(
    path: Path,
    data: Path,
    out: Path,
    workers: int,
    implementation: str,
    device: str = "cpu",
    threads: int = 1,
):
    steps = "\n".join(
        f"  {name}: {{implementation: {implementation}}}"
        for name in ("mask", "denoise", "dti")
    )
    path.write_text(
        f"pipeline: neuro\ninput:\n  path: {data}\noutput: {out}\n"
        f"device: {device}\n"
        f"steps:\n{steps}\nexport: [fa, md, mask]\n"
        f"cluster:\n  n_workers: {workers}\n  threads_per_worker: {threads}\n"
    )


class _Sampler:
    """CPU seconds and peak RSS of every process of a tree, sampled."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.cpu: dict[int, float] = {}
        self.peak: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for p in tree:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        self.cpu[p.pid] = t.user + t.system
                        rss = p.memory_info().rss / 2**20
                        self.peak[p.pid] = max(self.peak.get(p.pid, 0.0), rss)
                        if p.pid not in self.names:
                            self.names[p.pid] = " ".join(p.cmdline())
                except psutil.Error:
                    continue
            self.stop.wait(INTERVAL)

    def workers(self) -> list[int]:
        # Worker processes are started by spawn through multiprocessing.
        return [
            pid
            for pid, cmd in self.names.items()
            if "multiprocessing" in cmd
            and "resource_tracker" not in cmd
            and pid != self.root.pid
        ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("bench-data"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--implementation", default="fast")
    parser.add_argument("--device", default="cpu", help="cpu or gpu")
    parser.add_argument("--threads", type=int, default=1, help="per worker")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    data = _dataset(args.data.resolve() / "neuro-hcp")
    name = f"{args.implementation}-{args.device}"
    out = args.data.resolve() / f"run-hcp-{name}"
    cfg = args.data.resolve() / f"hcp-{name}.yaml"
    _config(
        cfg, data, out, args.workers, args.implementation, args.device, args.threads
    )

    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen([*_sciimg(), "run", str(cfg), "--force"])
    sampler = _Sampler(proc.pid)
    code = proc.wait()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.thread.join()
    after = os.times()
    tree_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    workers = sampler.workers()
    worker_cpu = sum(sampler.cpu[p] for p in workers)

    import zarr

    store = zarr.open_group(str(out / "sub-01.zarr"), mode="r")
    timings = dict(store.attrs["sciimg"]["timings"])
    total = sum(t["compute_s"] for t in timings.values())
    share = {k: round(t["compute_s"] / total, 3) for k, t in timings.items()}
    series = data / "sub-01" / "dwi" / "sub-01_dwi.nii.gz"
    shape = (145, 174, 145, 288)
    raw = 4 * shape[0] * shape[1] * shape[2] * shape[3]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "status": code,
        "workers": args.workers,
        "implementation": args.implementation,
        "device": args.device,
        "wall_s": round(wall, 1),
        "cpu_s_tree": round(max(tree_cpu, sum(sampler.cpu.values())), 1),
        "cpu_s_workers": round(worker_cpu, 1),
        "peak_mib_per_worker": [round(sampler.peak[p]) for p in workers],
        "step_seconds": timings,
        "step_share": share,
        "series_file_bytes": series.stat().st_size,
        "read_mib_per_s": round(raw / 2**20 / timings["read"]["compute_s"], 1),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
