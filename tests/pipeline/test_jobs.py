"""Items are settled one by one as they finish, on a real LocalCluster."""

from __future__ import annotations

import time
from pathlib import Path

import dask

from sciimg.io import ZarrStoreWriter
from sciimg.pipeline._jobs import Job, compute_jobs


def _wait_for(path: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while not Path(path).exists():
        if time.monotonic() > deadline:
            msg = f"{path} never appeared"
            raise TimeoutError(msg)
        time.sleep(0.05)
    return "waited"


def test_a_finished_item_is_committed_while_others_still_run(client, tmp_path):
    """Item 0's store is committed before item 1 ends: item 1 waits for it."""
    signal = tmp_path / "item-0-committed"
    first = ZarrStoreWriter(tmp_path / "first.zarr")
    second = ZarrStoreWriter(tmp_path / "second.zarr")

    def after(store: Path) -> list[str]:
        signal.touch()  # only reached once item 0 is committed
        return []

    jobs = [
        Job(
            "first",
            "fp0",
            first,
            [dask.delayed(sum)([1, 2])],
            {},
            after=after,
        ),
        Job(
            "second",
            "fp1",
            second,
            [dask.delayed(_wait_for, pure=False)(str(signal), 30.0)],
            {},
        ),
    ]
    results = {}
    compute_jobs(jobs, client, results, progress=False, log=lambda m: None)
    assert results["first"].status == "done"
    assert results["second"].status == "done", results["second"].error
    assert (tmp_path / "first.zarr").is_dir() and (tmp_path / "second.zarr").is_dir()


def test_a_failed_item_is_aborted_and_the_others_committed(client, tmp_path):
    def boom():
        raise ValueError("no good")

    writers = [ZarrStoreWriter(tmp_path / f"{n}.zarr") for n in ("a", "b")]
    jobs = [
        Job("a", "fa", writers[0], [dask.delayed(boom, pure=False)()], {}),
        Job("b", "fb", writers[1], [dask.delayed(sum)([3, 4])], {}),
    ]
    results = {}
    compute_jobs(jobs, client, results, progress=False, log=lambda m: None)
    assert results["a"].status == "failed"
    assert results["a"].error == "ValueError: no good"
    assert not (tmp_path / "a.zarr").exists()
    assert results["b"].status == "done"
    assert (tmp_path / "b.zarr").is_dir()
    # The cluster forgets both items' tasks once they are settled (the client
    # tells it so in the background).
    deadline = time.monotonic() + 10
    while client.who_has() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not client.who_has()
