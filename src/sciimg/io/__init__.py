"""Readers, writers and stores: files in, lazy images with geometry out."""

from sciimg.io._arrow_buffers import arrow_array, arrow_to_numpy
from sciimg.io._atomic import atomic_path, temporary_sibling
from sciimg.io._atomic import remove as remove_path
from sciimg.io._catalog import catalog_format, read_catalog, write_catalog
from sciimg.io._chunks import chunk_budget, chunks_for
from sciimg.io._collections import ensure_collection, update_series
from sciimg.io._discover import (
    Subject,
    discover_exposures,
    discover_images,
    discover_subjects,
)
from sciimg.io._dwi import open_dwi
from sciimg.io._exposure import DEFAULT_MASK_BITS, Exposure, open_exposure
from sciimg.io._fits import fits_stem, is_fits, open_fits, open_fits_images
from sciimg.io._fits_wcs import describe_wcs, wcs_from_attrs
from sciimg.io._gradients import (
    find_gradient_files,
    image_stem,
    make_gtab,
    read_gradients,
)
from sciimg.io._image import Image, default_dims
from sciimg.io._keywords import fits_keywords
from sciimg.io._nifti import open_nifti, write_nifti
from sciimg.io._registry import list_readers, open_image, register_reader
from sciimg.io._stores import ingest_files, is_zarr_store, store_members
from sciimg.io._zarr import (
    ZarrStoreWriter,
    image_names,
    iter_images,
    open_zarr,
    store_attrs,
    write_zarr,
)

__all__ = [
    "DEFAULT_MASK_BITS",
    "Exposure",
    "Image",
    "Subject",
    "ZarrStoreWriter",
    "arrow_array",
    "arrow_to_numpy",
    "atomic_path",
    "catalog_format",
    "chunk_budget",
    "chunks_for",
    "default_dims",
    "describe_wcs",
    "discover_exposures",
    "discover_images",
    "discover_subjects",
    "ensure_collection",
    "find_gradient_files",
    "fits_keywords",
    "fits_stem",
    "image_names",
    "image_stem",
    "ingest_files",
    "is_fits",
    "is_zarr_store",
    "iter_images",
    "list_readers",
    "make_gtab",
    "open_dwi",
    "open_exposure",
    "open_fits",
    "open_fits_images",
    "open_image",
    "open_nifti",
    "open_zarr",
    "read_catalog",
    "read_gradients",
    "register_reader",
    "remove_path",
    "store_attrs",
    "store_members",
    "temporary_sibling",
    "update_series",
    "wcs_from_attrs",
    "write_catalog",
    "write_nifti",
    "write_zarr",
]
