import shutil

import pytest

from sciimg.errors import InputError
from sciimg.io import discover_subjects


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
