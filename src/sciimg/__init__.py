"""sciimg: scientific image pipelines on Dask.

Diffusion MRI (NIfTI) and survey images, read into chunked dask arrays with their
geometry, processed by functions that match the field's reference libraries, and
run over many subjects by Dask without hand-tuning.
"""

from sciimg._version import __version__

__all__ = ["__version__"]
