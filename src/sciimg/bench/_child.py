"""One engine run in a fresh process: ``python -m sciimg.bench._child SPEC.json``.

The spec names the engine, workload and output folder; the result (step times,
engine details, or the error) is written to ``spec["result"]`` as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


def run(spec: dict) -> dict:
    from sciimg.bench._workloads import Workload

    workload = Workload(
        spec["pipeline"], spec["size"], spec["count"], Path(spec["data"])
    )
    engine = spec["engine"]
    run_fn = workload.suite.engine(engine)
    kwargs = {}
    if engine != "serial":
        kwargs["workers"] = spec["workers"]
    if engine == "spark" and spec.get("spark_master"):
        kwargs["master"] = spec["spark_master"]
    t0 = time.perf_counter()
    result = run_fn(workload, Path(spec["out"]), workload.step_params(), **kwargs)
    result["engine_s"] = round(time.perf_counter() - t0, 4)
    from sciimg.bench._measure import THREAD_LIMIT_NAMES

    # What the run's native thread pools were limited to (the harness sets them).
    result["thread_limits"] = {k: os.environ.get(k) for k in THREAD_LIMIT_NAMES}
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = {"ok": True, **run(spec)}
    except Exception as exc:  # reported in the results, not raised
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500],
            "traceback": traceback.format_exc()[-4000:],
        }
    Path(spec["result"]).write_text(json.dumps(result, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
