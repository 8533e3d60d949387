"""A run's record: what happened to each item, saved as ``run.json``."""

from __future__ import annotations

import contextlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sciimg import __version__
from sciimg.errors import ReportError
from sciimg.io import atomic_path
from sciimg.pipeline._jobs import ItemResult
from sciimg.pipeline.config import PipelineConfig

__all__ = ["RunReport", "write_report"]


@dataclass
class RunReport:
    """The outcome of a run, as saved in ``run.json``."""

    pipeline: str
    output: str
    started: str
    finished: str
    wall_seconds: float
    config: dict[str, Any]
    fingerprint: str
    versions: dict[str, str]
    cluster: dict[str, Any]
    subjects: list[ItemResult]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.status in ("done", "skipped") for s in self.subjects)

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "skipped": 0, "failed": 0, "interrupted": 0}
        for s in self.subjects:
            out[s.status] += 1
        return out

    def _repr_html_(self) -> str:
        """A table of the items in Jupyter, as the command line prints it."""
        from html import escape

        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{escape(str(cell))}</td>"
                for cell in (
                    s.id,
                    s.kind,
                    s.status,
                    f"{s.seconds:.1f}" if s.seconds is not None else "-",
                    f"{s.step}: {s.error}" if s.step else s.error or "",
                )
            )
            + "</tr>"
            for s in self.subjects
        )
        counts = self.counts()
        head = "".join(
            f"<th>{h}</th>" for h in ("item", "kind", "status", "time (s)", "message")
        )
        return (
            f"<p>{escape(self.output)}: {counts['done']} done, {counts['skipped']} "
            f"skipped, {counts['failed']} failed in {self.wall_seconds:.1f} s</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "sciimg": __version__}
    packages = ("dask", "distributed", "dipy", "nibabel", "zarr", "numpy", "scipy")
    packages += ("astropy", "sep", "reproject", "astroscrappy")
    for pkg in packages:
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def write_report(
    cfg: PipelineConfig,
    output: Path,
    t0: float,
    started: datetime,
    cluster_info: dict[str, Any],
    results: dict[str, ItemResult],
    summary: dict[str, Any] | None = None,
) -> RunReport:
    """Save ``run.json`` (atomically) and return the report."""
    finished = datetime.now(UTC)
    report = RunReport(
        pipeline=cfg.pipeline,
        output=str(output),
        started=started.isoformat(timespec="seconds"),
        finished=finished.isoformat(timespec="seconds"),
        wall_seconds=round(time.perf_counter() - t0, 3),
        config=cfg.model_dump(mode="json"),
        fingerprint=cfg.fingerprint(),
        versions=_versions(),
        cluster=cluster_info,
        subjects=[results[k] for k in sorted(results)],
        summary=dict(summary or {}),
    )
    path = output / "run.json"
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ReportError(path, f"cannot be written ({reason})") from exc
    return report
