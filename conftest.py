"""Collection of the package's doctests: modules that need CuPy are skipped
where it is not installed (they also need a GPU to run)."""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("cupy") is None:
    collect_ignore.append("src/sciimg/kernels/_cupy.py")
