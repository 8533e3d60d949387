"""``sciimg bench``: every engine on the same workloads, measured and compared."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sciimg.bench._measure import THREAD_LIMIT_NAMES, measure
from sciimg.bench._workloads import ENGINES, check_workload, ensure_workload


def machine_info() -> dict[str, Any]:
    """The machine the figures were measured on."""
    import psutil

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


def versions(engines: Sequence[str]) -> dict[str, str]:
    """Versions of the libraries that did the work."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["sciimg", "dask", "distributed", "numpy", "dipy", "astropy", "sep"]
    names += ["reproject", "zarr"]
    if "spark" in engines:
        names.append("pyspark")
    if "relational" in engines:
        names.append("duckdb")
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    if "spark" in engines:
        out["java"] = _java_version()
    return out


def _java_version() -> str:
    import subprocess

    try:
        text = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, check=False
        ).stderr
    except OSError:
        return "missing"
    return text.splitlines()[0] if text else "unknown"


def check_engines(engines: Sequence[str]) -> None:
    """Fail early, in one line, if an engine cannot run here."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        msg = f"unknown engine {unknown[0]!r}; choose from {', '.join(ENGINES)}"
        raise ValueError(msg)
    needs = {"spark": "pyspark", "relational": "duckdb"}
    for engine in engines:
        module = needs.get(engine)
        if module is None:
            continue
        try:
            __import__(module)
        except ImportError:
            msg = f"engine {engine!r} needs {module}: pip install 'sciimg[bench]'" + (
                " (and Java 17+)" if engine == "spark" else ""
            )
            raise ValueError(msg) from None
    if "spark" in engines and shutil.which("java") is None:
        msg = "engine 'spark' needs Java 17+ on PATH (apt-get install openjdk-17-jre)"
        raise ValueError(msg)


def run_bench(
    pipeline: str,
    *,
    engines: Sequence[str] = ENGINES,
    size: str = "tiny",
    counts: Sequence[int] = (1,),
    workers: Sequence[int] = (1,),
    out: Path,
    cache: Path | None = None,
    spark_master: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``engines`` on ``pipeline`` at ``size`` for each count and worker number.

    Every run is a fresh process whose whole process tree is measured; each
    engine's outputs are compared with the serial run's (which always runs: it
    is the reference). Writes ``OUT/results.json``, ``OUT/results.md`` and PNG
    plots; returns the results.

    Examples
    --------
    >>> run_bench("neuro", engines=["dask"], out=Path("b"))  # doctest: +SKIP
    """
    from sciimg.bench._report import write_report

    suite = check_workload(pipeline, size)
    engines = list(dict.fromkeys(engines))
    check_engines(engines)
    missing = [e for e in ["serial", *engines] if e not in suite.engines]
    if missing:
        msg = f"the {pipeline} benchmark has no engine {missing[0]!r}"
        raise ValueError(msg)
    order = ["serial", *[e for e in engines if e != "serial"]]
    out = Path(out).resolve()
    cache = Path(cache).resolve() if cache else out / "data"
    started = datetime.now(UTC)
    runs = []
    for count in counts:
        t0 = time.perf_counter()
        workload = ensure_workload(cache, pipeline, size, count)
        log(f"{workload.label}: data ready in {time.perf_counter() - t0:.1f} s")
        reference = None
        for engine in order:
            for n in [1] if engine == "serial" else workers:
                run = _one_run(workload, engine, n, out, spark_master)
                run["reference"] = engine == "serial"
                if engine == "serial":
                    reference = Path(run["outputs"]) if run["ok"] else None
                elif run["ok"] and reference is not None:
                    run["agreement"] = suite.compare(reference, Path(run["outputs"]))
                runs.append(run)
                log(_line(run))
    results = {
        "pipeline": pipeline,
        "unit": suite.unit,
        "size": size,
        "size_spec": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in suite.sizes[size].items()
        },
        "counts": list(counts),
        "workers": list(workers),
        "engines": order,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(order),
        "steps": list(suite.timed_steps),
        "runs": runs,
    }
    write_report(results, out)
    return results


#: Native libraries' own thread pools limited to one thread, in every engine's
#: process tree: a run's workers are then its only parallelism, and "1 worker"
#: means one core. (astroscrappy's OpenMP loops otherwise take every core in
#: the serial run; Dask's nannies and PySpark set the same for their workers.)
ONE_THREAD_PER_WORKER = dict.fromkeys(THREAD_LIMIT_NAMES, "1")


def _one_run(workload, engine: str, workers: int, out: Path, master) -> dict[str, Any]:
    run_dir = out / "runs" / f"{engine}-{workload.count}-w{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    spec = {
        "engine": engine,
        "pipeline": workload.pipeline,
        "size": workload.size,
        "count": workload.count,
        "data": str(workload.data),
        "workers": workers,
        "out": str(run_dir / "outputs"),
        "result": str(run_dir / "result.json"),
        "spark_master": master,
    }
    (run_dir / "spec.json").write_text(json.dumps(spec, indent=2))
    child = [sys.executable, "-m", "sciimg.bench._child", str(run_dir / "spec.json")]
    usage = measure(child, env={**os.environ, **ONE_THREAD_PER_WORKER})
    result_path = run_dir / "result.json"
    result = (
        json.loads(result_path.read_text())
        if result_path.exists()
        else {"ok": False, "error": f"the run exited with status {usage.returncode}"}
    )
    return {
        "engine": engine,
        "count": workload.count,
        "workers": workers,
        "ok": bool(result.get("ok")),
        "error": result.get("error"),
        "wall_s": usage.wall_s,
        "cpu_s": usage.cpu_s,
        "peak_rss_mib": usage.peak_rss_mib,
        "steps": result.get("steps", {}),
        "ingest_s": result.get("steps", {}).get("ingest"),
        "engine_info": result.get("engine", {}),
        "thread_limits": result.get("thread_limits", {}),
        "outputs": spec["out"],
    }


def _line(run: dict[str, Any]) -> str:
    head = f"  {run['engine']:<10} n={run['count']:<3} workers={run['workers']}: "
    if not run["ok"]:
        return head + f"FAILED: {run['error']}"
    agree = run.get("agreement")
    verdict = (
        "reference"
        if run["reference"]
        else "agrees"
        if agree and agree["agree"]
        else "DISAGREES: " + "; ".join(agree["problems"])
        if agree
        else "not compared"
    )
    return head + (
        f"{run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU, "
        f"{run['peak_rss_mib']:.0f} MiB peak; {verdict}"
    )
