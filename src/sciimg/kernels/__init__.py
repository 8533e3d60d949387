"""NumPy-in, NumPy-out kernels: the per-chunk science every engine runs."""
