"""Quality-control pictures: a coadd with its detections drawn on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_detections"]


def plot_detections(image, catalog, path, *, title: str | None = None) -> Path:
    """Save a PNG of ``image`` (asinh stretch) with Kron ellipses of ``catalog``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from astropy.table import Table
    >>> cat = Table({"x": [10.0], "y": [12.0], "a": [2.0], "b": [1.0],
    ...              "theta": [30.0], "kron_radius": [3.0]})
    >>> out = plot_detections(np.zeros((32, 32)), cat,
    ...                       os.path.join(tempfile.mkdtemp(), "qc.png"))
    >>> out.stat().st_size > 0
    True
    """
    # A bare Figure, not pyplot: no backend is chosen, so a notebook's inline
    # plots keep working, and nothing is left open for pyplot to show.
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse

    from sciimg.io import atomic_path

    data = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(data)
    shown = np.where(finite, data, np.nan)
    norm = (
        ImageNormalize(data[finite], interval=ZScaleInterval(), stretch=AsinhStretch())
        if finite.any() and np.ptp(data[finite]) > 0
        else None
    )
    size = 8.0 * np.array(data.shape[::-1]) / max(data.shape)
    fig = Figure(figsize=(size[0] + 0.5, size[1] + 0.5), dpi=100)
    ax = fig.subplots()
    ax.imshow(shown, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
    for row in catalog:
        r = (
            max(float(row["kron_radius"]) * 2.5, 1.0)
            if np.isfinite(row["kron_radius"])
            else 3.0
        )
        ax.add_patch(
            Ellipse(
                (row["x"], row["y"]),
                2 * r * row["a"],
                2 * r * row["b"],
                angle=float(row["theta"]),
                fill=False,
                edgecolor="tab:orange",
                linewidth=0.8,
            )
        )
    ax.set_title(title or f"{len(catalog)} sources")
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
