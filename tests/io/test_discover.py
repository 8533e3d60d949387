import gzip
import shutil

import pytest

from sciimg.errors import InputError
from sciimg.io import discover_exposures, discover_subjects


def _copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)


def test_bids_layout(tmp_path, small_64d):
    data, bval, bvec = small_64d
    for sub in ("sub-02", "sub-01"):
        d = tmp_path / sub / "dwi"
        _copy(data, d / (f"{sub}_dwi" + "".join(data.suffixes)))
        _copy(bval, d / f"{sub}_dwi.bval")
        _copy(bvec, d / f"{sub}_dwi.bvec")
    (tmp_path / "sub-03" / "anat").mkdir(parents=True)  # no dwi: not a subject
    subjects = discover_subjects(tmp_path)
    assert [s.id for s in subjects] == ["sub-01", "sub-02"]


def test_hcp_layout(tmp_path, small_64d):
    data, bval, bvec = small_64d
    d = tmp_path / "100307" / "T1w" / "Diffusion"
    _copy(data, d / ("data" + "".join(data.suffixes)))
    _copy(bval, d / "bvals")
    _copy(bvec, d / "bvecs")
    [subject] = discover_subjects(tmp_path)
    assert subject.id == "100307"
    from sciimg.io import open_dwi

    assert len(open_dwi(subject.dwi).gtab.bvals) == 65


def test_file_list_and_duplicates(tmp_path, small_64d):
    assert [s.id for s in discover_subjects([small_64d[0]])] == ["small_64D"]
    other = tmp_path / small_64d[0].name
    shutil.copy(small_64d[0], other)
    with pytest.raises(InputError, match=r"same subject id|as does"):
        discover_subjects([small_64d[0], other])


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="holds no subjects"):
        discover_subjects(tmp_path)


# ---- items that cannot be found cleanly fail alone --------------------------------


def _bids(root, small_64d, subjects=("sub-01", "sub-02")):
    data, bval, bvec = small_64d
    for sub in subjects:
        d = root / sub / "dwi"
        _copy(data, d / (f"{sub}_dwi" + "".join(data.suffixes)))
        _copy(bval, d / f"{sub}_dwi.bval")
        _copy(bvec, d / f"{sub}_dwi.bvec")


def test_duplicate_ids_fail_that_subject_naming_both_files(tmp_path, small_64d):
    _bids(tmp_path, small_64d)
    [first] = (tmp_path / "sub-01" / "dwi").glob("sub-01_dwi.nii*")
    # The same series beside it, compressed or not: which one is right?
    other = first.with_name("sub-01_dwi.nii" + ("" if first.suffix == ".gz" else ".gz"))
    raw = first.read_bytes()
    other.write_bytes(
        gzip.decompress(raw) if first.suffix == ".gz" else gzip.compress(raw)
    )
    errors = {}
    assert [s.id for s in discover_subjects(tmp_path, errors=errors)] == ["sub-02"]
    message = str(errors["sub-01"])
    assert str(first) in message and str(other) in message
    assert "gives subject id 'sub-01'" in message and "\n" not in message
    with pytest.raises(InputError, match="neither is processed"):
        discover_subjects(tmp_path)  # a library caller not asking for errors


def test_symlink_loop_fails_its_subject_and_ends(tmp_path, small_64d):
    _bids(tmp_path, small_64d)
    (tmp_path / "sub-01" / "dwi" / "loop").symlink_to("..")
    (tmp_path / "sub-03").symlink_to("sub-03")  # a link to itself
    errors = {}
    assert [s.id for s in discover_subjects(tmp_path, errors=errors)] == ["sub-02"]
    assert str(errors["sub-01"]) == (
        f"{tmp_path}/sub-01/dwi/loop: is a symlink loop: it leads back to "
        f"{tmp_path}/sub-01, above it"
    )
    assert str(errors["sub-03"]).startswith(f"{tmp_path}/sub-03: is a symlink loop")


def test_symlinked_subject_folders_are_followed(tmp_path, small_64d):
    _bids(tmp_path / "elsewhere", small_64d, ["sub-01"])
    data = tmp_path / "data"
    data.mkdir()
    (data / "sub-01").symlink_to(tmp_path / "elsewhere" / "sub-01")
    [series] = (data / "sub-01" / "dwi").glob("sub-01_dwi.nii*")
    alias = data / "sub-09" / "dwi" / series.name.replace("sub-01", "sub-09")
    alias.parent.mkdir(parents=True)
    alias.symlink_to(series)
    errors = {}
    subjects = discover_subjects(data, errors=errors)
    # One series under two ids: processed once, the other id says why.
    assert [(s.id, s.dwi) for s in subjects] == [("sub-01", series)]
    assert str(errors["sub-09"]) == (
        f"{alias}: is the same file as {series} (a link to it); it is processed "
        "once, as subject 'sub-01'"
    )


def test_a_file_listed_twice_is_one_subject(small_64d):
    subjects = discover_subjects([small_64d[0], small_64d[0]], errors={})
    assert [s.id for s in subjects] == ["small_64D"]


def _fits(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # discovery reads names, not files
    return path


def test_exposures_duplicates_loops_and_linked_folders(tmp_path):
    root = tmp_path / "survey"
    good = _fits(root / "visit-0" / "ccd-0.fits")
    twin = _fits(root / "visit-1" / "ccd-0.fits")
    twin_gz = _fits(root / "visit-1" / "ccd-0.fits.gz")
    (root / "visit-0" / "loop").symlink_to("..")
    linked = _fits(tmp_path / "disk2" / "visit-2" / "ccd-0.fits")
    (root / "visit-2").symlink_to(linked.parent)  # data on another disk
    (root / "latest").symlink_to("visit-0")  # the same files again
    errors = {}
    found = discover_exposures(root, errors=errors)
    assert found == [
        ("visit-0_ccd-0", good),
        ("visit-2_ccd-0", root / "visit-2" / "ccd-0.fits"),
    ]
    assert sorted(errors) == ["latest_ccd-0", "visit-0_loop", "visit-1_ccd-0"]
    assert str(errors["visit-1_ccd-0"]) == (
        f"{twin}: gives exposure id 'visit-1_ccd-0', as does {twin_gz}; neither "
        "is processed: remove or rename all but one"
    )
    assert str(errors["visit-0_loop"]) == (
        f"{root}/visit-0/loop: is a symlink loop: it leads back to {root}, above it"
    )
    assert str(errors["latest_ccd-0"]).startswith(
        f"{root}/latest/ccd-0.fits: is the same file as {good}"
    )


def test_no_items_at_all_is_still_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no FITS files"):
        discover_exposures(tmp_path / "empty", errors={})
    with pytest.raises(InputError, match="holds no subjects"):
        discover_subjects(tmp_path / "empty", errors={})
