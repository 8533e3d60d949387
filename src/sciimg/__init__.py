"""sciimg: scientific image pipelines on Dask.

Diffusion MRI (NIfTI) and survey images, read into chunked dask arrays with their
geometry, processed by functions that match the field's reference libraries, and
run over many subjects by Dask without hand-tuning.
"""

import logging as _logging

from sciimg._version import __version__

__all__ = ["__version__"]

# A library's records go where its user's logging sends them, and nowhere when
# it sends them nowhere (`sciimg run` sends them to the run's log file).
_logging.getLogger("sciimg").addHandler(_logging.NullHandler())
