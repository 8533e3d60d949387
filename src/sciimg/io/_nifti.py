"""NIfTI-1/2 reader and writer (nibabel), opening voxels lazily as dask arrays."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sciimg.errors import InputError
from sciimg.io._atomic import atomic_path
from sciimg.io._chunks import chunks_for
from sciimg.io._gradients import find_gradient_files, read_gradients
from sciimg.io._image import Image, default_dims
from sciimg.io._registry import register_reader

__all__ = ["NiftiReader", "open_nifti", "write_nifti"]

_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, struct.error)


def _load(path: Path, **kwargs: Any):
    """``nibabel.load``, also for files whose name does not end in .nii/.nii.gz.

    The registry recognises NIfTI by its header bytes, so a misnamed file is still
    opened (uncompressed ones only: nibabel picks decompression by suffix).
    """
    import nibabel as nib

    if path.name.endswith((".nii", ".nii.gz")):
        return nib.load(path, **kwargs)
    holder = nib.fileholders.FileHolder(filename=str(path))
    for klass in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            return klass.from_file_map({"image": holder, "header": holder}, **kwargs)
        except (nib.filebasedimages.ImageFileError, *_READ_ERRORS):
            continue
    msg = f"Cannot read {path} as NIfTI"
    raise nib.filebasedimages.ImageFileError(msg)


class _NiftiVoxels:
    """Array-like over a NIfTI file's voxels for ``da.from_array``.

    It pickles as a path (not an open file), opens the file once per process on
    first use, and turns read failures into :class:`InputError` naming the file,
    so a damaged file fails its subject with a useful message on any worker.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.ndim = len(shape)
        self._proxy = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["shape"], state["dtype"])

    def _open(self):
        with self._lock:
            if self._proxy is None:
                # keep_file_open lets indexed_gzip reuse its index between chunks
                # instead of inflating a .nii.gz from the start for every read.
                self._proxy = _load(self.path, keep_file_open=True).dataobj
        return self._proxy

    def __getitem__(self, key):
        try:
            return np.asarray(self._open()[key], dtype=self.dtype)
        except FileNotFoundError as exc:
            # Read where the task runs: on a cluster, a worker on another
            # machine that does not see the file.
            import socket

            raise InputError(
                self.path, f"cannot read voxels: not found on {socket.gethostname()}"
            ) from exc
        except _READ_ERRORS as exc:
            raise InputError(
                self.path,
                f"cannot read voxels, file is truncated or "
                f"damaged ({type(exc).__name__}: {exc})",
            ) from exc


def _check_size(path: Path, header) -> None:
    """Fail early on a truncated file instead of midway through a computation."""
    need = (
        int(header.get_data_offset())
        + int(np.prod(header.get_data_shape(), dtype=np.int64))
        * header.get_data_dtype().itemsize
    )
    if path.name.endswith(".gz"):
        # The gzip trailer holds the inflated size (mod 2**32). A cut-off file ends
        # in arbitrary bytes instead, which this catches only sometimes; reading the
        # voxels catches the rest, with the same kind of message.
        with open(path, "rb") as f:
            f.seek(-min(4, path.stat().st_size), os.SEEK_END)
            tail = f.read(4)
        isize = struct.unpack("<I", tail)[0] if len(tail) == 4 else 0
        if need < 2**32 and isize < need:
            raise InputError(
                path,
                f"is truncated or damaged: header implies {need} "
                f"bytes, gzip stream ends after {isize}",
            )
    elif (size := path.stat().st_size) < need:
        raise InputError(
            path, f"is truncated: header implies {need} bytes, file has {size}"
        )


def open_nifti(
    path: str | Path,
    *,
    chunks: Any = None,
    chunk_memory: int | str | None = None,
    gradients: bool = True,
) -> Image:
    """Open a NIfTI file lazily; nothing but the header is read.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz`` file.
    chunks : optional
        Dask chunks; default: whole volumes (or slabs of ``z`` for 3-D images), as
        many per chunk as fit ``chunk_memory``, following the on-disk order.
    chunk_memory : int or str, optional
        Bytes per chunk (default Dask's ``array.chunk-size``).
    gradients : bool
        Attach a dipy ``GradientTable`` when ``bval``/``bvec`` files lie beside it.

    Returns
    -------
    Image

    Examples
    --------
    >>> from dipy.data import get_fnames
    >>> fdata, _, _ = get_fnames(name="small_64D")
    >>> img = open_nifti(fdata)
    >>> img.shape, img.gtab.bvals.shape, img.zooms
    ((10, 10, 10, 65), (65,), (2.0, 2.0, 2.0))
    """
    import dask.array as da
    import nibabel as nib
    from dask.base import tokenize

    path = Path(path)
    try:
        img = _load(path)
    except FileNotFoundError as exc:
        raise InputError(path, "does not exist") from exc
    except (nib.filebasedimages.ImageFileError, *_READ_ERRORS) as exc:
        raise InputError(path, f"is not a readable NIfTI file ({exc})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(path, f"is a {type(img).__name__}, not NIfTI")
    header = img.header
    shape = tuple(int(n) for n in img.shape)
    if len(shape) < 3:
        raise InputError(path, f"is {len(shape)}-D; sciimg needs at least 3-D images")
    _check_size(path, header)
    proxy = img.dataobj
    dtype = np.dtype(proxy.dtype)
    if proxy.slope != 1 or proxy.inter != 0:
        dtype = np.result_type(dtype, np.float32)  # nibabel applies the scaling
    if chunks is None:
        chunks = chunks_for(
            shape,
            dtype,
            chunk_memory=chunk_memory,
            whole=(0, 1, 2) if len(shape) > 3 else (0, 1),
        )
    stat = path.stat()
    voxels = _NiftiVoxels(path, shape, dtype)
    data = da.from_array(
        voxels,
        chunks=chunks,
        name="nifti-" + tokenize(str(path.resolve()), stat.st_size, stat.st_mtime_ns),
        meta=np.empty((0,) * len(shape), dtype=dtype),
    )
    gtab = None
    if gradients and len(shape) == 4 and (found := find_gradient_files(path)):
        gtab = read_gradients(*found, n_volumes=shape[3], image=path)
    zooms = tuple(float(z) for z in header.get_zooms()[:3])
    return Image(
        data, img.affine, default_dims(len(shape)), zooms, gtab=gtab, source=str(path)
    )


def write_nifti(image: Image, path: str | Path) -> Path:
    """Write an image (computing it) to a NIfTI file, atomically.

    The data and affine are written as they are; ``bval``/``bvec`` files are written
    beside a diffusion series that has a gradient table.

    Examples
    --------
    >>> import dask.array as da, numpy as np, tempfile, os
    >>> img = Image(da.ones((2, 2, 2), dtype="f4"), np.eye(4), ("x", "y", "z"),
    ...             (1.0, 1.0, 1.0))
    >>> out = write_nifti(img, os.path.join(tempfile.mkdtemp(), "ones.nii.gz"))
    >>> out.name
    'ones.nii.gz'
    """
    import nibabel as nib

    path = Path(path)
    data = np.asarray(image.data)
    if data.dtype == bool:
        data = data.astype(np.uint8)  # NIfTI has no boolean type
    nii = nib.Nifti1Image(data, image.affine)
    nii.header.set_zooms(tuple(image.zooms) + nii.header.get_zooms()[3:])
    nii.header.set_xyzt_units("mm", "sec")
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(nii, tmp)
    if image.gtab is not None and data.ndim == 4:
        stem = path.name[: -len(suffix)]
        np.savetxt(path.with_name(stem + ".bval"), image.gtab.bvals[None], fmt="%g")
        np.savetxt(path.with_name(stem + ".bvec"), image.gtab.bvecs.T, fmt="%.8f")
    return path


class NiftiReader:
    """Registry entry for NIfTI-1 and NIfTI-2 files (plain or gzip-compressed)."""

    name = "nifti"
    description = "NIfTI-1/2 (.nii, .nii.gz) via nibabel"

    def guess_can_open(self, path: Path, magic: bytes) -> bool:
        if len(magic) >= 348:
            for order in "<>":
                (sizeof_hdr,) = struct.unpack(order + "i", magic[:4])
                if sizeof_hdr == 348 and magic[344:347] in (b"n+1", b"ni1"):
                    return True
                if sizeof_hdr == 540 and magic[4:7] in (b"n+2", b"ni2"):
                    return True
            return False
        return path.name.endswith((".nii", ".nii.gz")) and not magic

    def open(self, path: Path, **kwargs: Any) -> Image:
        return open_nifti(path, **kwargs)


register_reader(NiftiReader())
