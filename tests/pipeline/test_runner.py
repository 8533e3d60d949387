"""The runner on a real LocalCluster, against dipy on the same data."""

import json
import re
import shutil

import nibabel as nib
import numpy as np
import pytest
from dipy.denoise.nlmeans import nlmeans as dipy_nlmeans
from dipy.denoise.noise_estimate import estimate_sigma
from dipy.reconst.dti import TensorModel
from dipy.segment.mask import median_otsu

from sciimg.io import open_dwi, open_zarr
from sciimg.neuro import b0_indices
from sciimg.pipeline import load_config, run_pipeline

STEPS = {
    "mask": {"median_radius": 2, "numpass": 2, "dilate": 1},
    "denoise": {"method": "classic"},
    "dti": {},
}


@pytest.fixture(scope="module")
def dataset(phantom_dir, tmp_path_factory):
    """The phantom plus a third subject whose file is 3-D (a bad subject)."""
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(phantom_dir, root, dirs_exist_ok=True)
    bad = root / "sub-03" / "dwi"
    bad.mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(np.ones((4, 4, 4), "f4"), np.eye(4)), bad / "sub-03_dwi.nii.gz"
    )
    return root


@pytest.fixture(scope="module")
def first_run(dataset, client, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    cfg = load_config(
        {
            "pipeline": "neuro",
            "input": {"path": str(dataset)},
            "output": str(out),
            "steps": STEPS,
            "export": ["fa", "md", "mask", "denoised"],
        }
    )
    return cfg, run_pipeline(cfg, client=client, log=lambda m: None)


def test_statuses_and_outputs(first_run):
    cfg, report = first_run
    status = {s.id: s.status for s in report.subjects}
    assert status == {"sub-01": "done", "sub-02": "done", "sub-03": "failed"}
    bad = report.subjects[2]
    assert "sub-03_dwi.nii.gz" in bad.error and "is 3-D" in bad.error
    out = cfg.output
    assert not (out / "sub-03.zarr").exists()
    assert not list(out.glob(".*tmp*"))
    for sid in ("sub-01", "sub-02"):
        store = out / f"{sid}.zarr"
        names = {p.name for p in store.iterdir() if p.is_dir()}
        assert names == {
            "mean_b0",
            "mask",
            "denoised",
            "fa",
            "md",
            "ad",
            "rd",
            "rgb",
            "evals",
            "evecs",
            "OME",  # the list of the store's images
        }
        for name in ("fa", "md", "mask", "denoised"):
            assert (out / sid / f"{name}.nii.gz").is_file()
        assert (out / sid / "denoised.bval").is_file()  # a series keeps gradients
    run = json.loads((out / "run.json").read_text())
    assert run["pipeline"] == "neuro" and run["versions"]["dipy"]
    assert run["cluster"]["workers"] == 2
    sub1 = next(s for s in run["subjects"] if s["id"] == "sub-01")
    assert {"read", "mask", "denoise", "dti", "write"} <= set(sub1["steps"])
    assert sub1["steps"]["denoise"]["tasks"] >= 27  # one task per volume at least


@pytest.mark.parametrize("sid", ["sub-01", "sub-02"])
def test_each_subject_matches_dipy(first_run, dataset, sid):
    # Each subject against dipy on its own data: catches tasks shared by mistake.
    cfg, _ = first_run
    dwi = open_dwi(dataset / sid / "dwi" / f"{sid}_dwi.nii.gz")
    data, gtab = dwi.data.compute(), dwi.gtab
    store = cfg.output / f"{sid}.zarr"
    _, mask = median_otsu(
        data, vol_idx=b0_indices(gtab), median_radius=2, numpass=2, dilate=1
    )
    np.testing.assert_array_equal(open_zarr(store, "mask").data.compute(), mask)
    denoised = open_zarr(store, "denoised").data.compute()
    ref = dipy_nlmeans(
        data,
        estimate_sigma(data),
        mask=mask,
        patch_radius=1,
        block_radius=5,
        rician=True,
        method="classic",
        num_threads=1,
    )
    assert np.abs(denoised - ref).max() <= 1e-4 * np.abs(ref).max()
    fa = open_zarr(store, "fa").data.compute()
    want = TensorModel(gtab).fit(denoised, mask=mask).fa
    np.testing.assert_allclose(fa, want, atol=1e-5)
    nii = nib.load(cfg.output / sid / "fa.nii.gz")
    np.testing.assert_array_equal(nii.affine, dwi.affine)
    np.testing.assert_array_equal(np.asarray(nii.dataobj), fa)


def test_rerun_skips_then_force_redoes(first_run, client):
    cfg, _ = first_run
    store = cfg.output / "sub-01.zarr"
    stamp = (store / "zarr.json").stat().st_mtime_ns
    (cfg.output / "sub-01" / "md.nii.gz").unlink()  # a lost export is made again
    again = run_pipeline(cfg, client=client, log=lambda m: None)
    status = {s.id: s.status for s in again.subjects}
    assert status == {"sub-01": "skipped", "sub-02": "skipped", "sub-03": "failed"}
    assert (store / "zarr.json").stat().st_mtime_ns == stamp
    assert (cfg.output / "sub-01" / "md.nii.gz").is_file()
    forced = run_pipeline(cfg, force=True, client=client, log=lambda m: None)
    assert {s.id: s.status for s in forced.subjects}["sub-01"] == "done"
    assert (store / "zarr.json").stat().st_mtime_ns != stamp


def test_steps_in_any_order_are_the_same_run(first_run, client, tmp_path):
    """The config written back with its keys sorted (as ``yaml.safe_dump`` does),
    steps reversed: the same plan and fingerprint, so first_run's outputs are
    current for it and every subject is skipped."""
    import yaml

    cfg, _ = first_run
    raw = cfg.model_dump(mode="json")
    raw["steps"] = dict(reversed(list(STEPS.items())))
    path = tmp_path / "sorted.yaml"
    path.write_text(yaml.safe_dump(raw))  # sorts keys: dti, denoise, mask
    again = load_config(path)
    assert [s.name for s in again.plan()] == ["mask", "denoise", "dti"]
    assert again.fingerprint() == cfg.fingerprint()
    report = run_pipeline(again, client=client, log=lambda m: None)
    status = {s.id: s.status for s in report.subjects}
    assert status == {"sub-01": "skipped", "sub-02": "skipped", "sub-03": "failed"}


def test_manifest_and_where_on_b_values(first_run, client, tmp_path):
    """Every run writes manifest.parquet; input.where selects subjects by what
    their headers and b-values say, before any compute."""
    import pyarrow.parquet as pq

    cfg, _ = first_run
    rows = {
        r["id"]: r for r in pq.read_table(cfg.output / "manifest.parquet").to_pylist()
    }
    # Whichever run wrote it last (the tests above rerun first_run's output).
    assert rows["sub-01"]["status"] in ("done", "skipped")
    assert rows["sub-03"]["status"] == "failed"
    assert rows["sub-01"]["b_max"] > 0 and rows["sub-01"]["b0_volumes"] >= 1
    assert rows["sub-01"]["fingerprint"] and rows["sub-01"]["store"] == "sub-01.zarr"
    raw = {**cfg.model_dump(mode="json"), "output": str(tmp_path / "out")}
    raw["input"] = {**raw["input"], "where": "b_max >= 500 and id != 'sub-02'"}
    report = run_pipeline(load_config(raw), client=client, log=lambda m: None)
    assert {s.id: s.status for s in report.subjects} == {"sub-01": "done"}
    assert report.summary["where"]["selected"] == 1
    assert report.summary["where"]["filtered"] == 2
    table = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    status = {r["id"]: r["status"] for r in table}
    # sub-03 is a 3-D file with no b-values: it has no b_max, and is left out.
    assert status == {"sub-01": "done", "sub-02": "filtered", "sub-03": "filtered"}
    assert not (tmp_path / "out" / "sub-02.zarr").exists()


def test_user_steps(first_run, client, tmp_path):
    cfg, _ = first_run
    changed = load_config(
        {
            **cfg.model_dump(mode="json"),
            "output": str(tmp_path),
            "steps": {
                **STEPS,
                "dti": {"fit_method": "OLS"},
                "wm": {
                    "function": "tests.pipeline.udfs:white_matter",
                    "params": {"threshold": 0.4},
                },
                "b0maps": {
                    "function": "tests.pipeline.udfs:two_maps",
                    "outputs": ["scaled", "log_b0"],
                },
            },
            "export": ["wm"],
        }
    )
    report = run_pipeline(changed, client=client, log=lambda m: None)
    assert {s.id: s.status for s in report.subjects}["sub-01"] == "done"
    store = tmp_path / "sub-01.zarr"
    fa = open_zarr(store, "fa").data.compute()
    mask = open_zarr(store, "mask").data.compute()
    np.testing.assert_array_equal(
        open_zarr(store, "wm").data.compute(), (fa > 0.4) & mask
    )
    b0 = open_zarr(store, "mean_b0").data.compute()
    np.testing.assert_allclose(open_zarr(store, "scaled").data.compute(), 2 * b0)
    assert (tmp_path / "sub-01" / "wm.nii.gz").is_file()


def test_changed_config_recomputes(first_run, client):
    cfg, _ = first_run
    ols = load_config(
        {
            **cfg.model_dump(mode="json"),
            "steps": {**STEPS, "dti": {"fit_method": "OLS"}},
        }
    )
    report = run_pipeline(ols, client=client, log=lambda m: None)
    assert {s.id: s.status for s in report.subjects}["sub-01"] == "done"
    back = run_pipeline(cfg, client=client, log=lambda m: None)  # and back again
    assert {s.id: s.status for s in back.subjects}["sub-01"] == "done"


def test_user_step_returning_a_scalar_fails_its_subject(first_run, client, tmp_path):
    cfg, _ = first_run
    bad = load_config(
        {
            **cfg.model_dump(mode="json"),
            "output": str(tmp_path),
            "steps": {
                "mask": STEPS["mask"],
                "s": {"function": "tests.pipeline.udfs:not_an_image"},
            },
            "export": [],
        }
    )
    report = run_pipeline(bad, client=client, log=lambda m: None)
    assert all(s.status == "failed" for s in report.subjects)
    assert "results must be images" in report.subjects[0].error


def _interiors(labels):
    """Voxels one voxel inside regions of uniform noiseless signal (brain only).

    Per-volume NLM averages across the edges of structures a few voxels wide, so
    at edges FA error grows; inside regions it falls. That is the claim tested.
    """
    from scipy.ndimage import binary_erosion

    inside = np.zeros(labels.shape, bool)
    for k in np.unique(labels[labels >= 2]):
        inside |= binary_erosion(labels == k)
    return inside


def test_denoising_improves_fa_against_truth(first_run, dataset, client, tmp_path):
    cfg, _ = first_run
    raw = load_config(
        {
            **cfg.model_dump(mode="json"),
            "output": str(tmp_path),
            "steps": {"mask": STEPS["mask"], "dti": {"inputs": {"denoised": "dwi"}}},
            "export": [],
        }
    )
    run_pipeline(raw, client=client, log=lambda m: None)
    for sid in ("sub-01", "sub-02"):
        truth = dataset / "derivatives" / "truth" / sid
        labels = np.asarray(nib.load(truth / f"{sid}_labels.nii.gz").dataobj)
        fa_true = np.asarray(nib.load(truth / f"{sid}_fa.nii.gz").dataobj)
        brain = _interiors(labels)
        assert brain.sum() > 100
        err = {}
        for name, root in (("denoised", cfg.output), ("raw", tmp_path)):
            fa = open_zarr(root / f"{sid}.zarr", "fa").data.compute()
            err[name] = np.sqrt(np.mean((fa[brain] - fa_true[brain]) ** 2))
        assert err["denoised"] < err["raw"], err


def test_failed_task_names_subject_step_and_exception(first_run, client, tmp_path):
    """A task raising on a worker fails its subject, naming the step and the
    original exception, with the worker's traceback in run.json."""
    cfg, _ = first_run
    bad = load_config(
        {
            **cfg.model_dump(mode="json"),
            "output": str(tmp_path),
            "steps": {
                "mask": STEPS["mask"],
                "boom": {"function": "tests.pipeline.udfs:explode"},
            },
            "export": [],
        }
    )
    lines = []
    report = run_pipeline(bad, client=client, log=lines.append)
    failed = {s.id: s for s in report.subjects if s.status == "failed"}
    one = failed["sub-01"]
    assert one.step == "boom"
    assert one.error == "ValueError: negative signal in this block"
    assert "in fail" in one.traceback and "negative signal" in one.traceback
    assert "sub-01: failed in step boom: ValueError: negative signal in this block" in (
        lines
    )
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["subjects"][0]["step"] == "boom"
    # In Jupyter the report shows as a table.
    html = report._repr_html_()
    assert "<td>sub-01</td><td>subject</td><td>failed</td>" in html
    assert "boom: ValueError: negative signal in this block" in html
    assert not (tmp_path / "sub-01.zarr").exists()


def test_dying_workers_fail_the_subject_not_the_run(first_run, tmp_path):
    """A worker killed mid-task (as for memory) ends in KilledWorker, reported
    with its step, instead of a run that waits forever."""
    import dask
    from distributed import Client, LocalCluster

    cfg, _ = first_run
    bad = load_config(
        {
            **cfg.model_dump(mode="json"),
            "input": {"path": str(first_run[0].input.path)},
            "output": str(tmp_path),
            "steps": {
                "mask": STEPS["mask"],
                "crash": {"function": "tests.pipeline.udfs:crash_worker"},
            },
            "export": [],
        }
    )
    # Give up at the first death, not the third, to keep the test short.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=1, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        report = run_pipeline(bad, client=client, log=lambda m: None)
    failed = {s.id: s for s in report.subjects if s.status == "failed"}
    assert set(failed) == {"sub-01", "sub-02", "sub-03"}
    # Dask cannot tell which task killed the worker: the steps it held are named.
    error = failed["sub-01"].error
    assert error.startswith("KilledWorker: a worker died (out of memory, killed, ")
    assert re.search(r"while it held tasks of step [a-z, ]*\bcrash\b", error), error
