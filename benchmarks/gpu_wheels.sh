#!/usr/bin/env bash
# Wheels of what sciimg needs beyond a CUDA machine's usual Python stack
# (NumPy, SciPy, numba, CuPy, pandas, pyarrow, pytest), for Python 3.12 on
# x86-64 Linux, into a folder that benchmarks/gpu.sh installs from without a
# network:  benchmarks/gpu_wheels.sh [FOLDER]   (default .whl)
set -euo pipefail
into=${1:-.whl}
mkdir -p "$into"
packages=(
    dask distributed dask-image dask-jobqueue bokeh xyzservices nibabel
    indexed-gzip dipy trx-python deepdiff orderly-set zarr numcodecs donfig
    google-crc32c astropy pyerfa astropy-iers-data sep reproject astropy-healpix
    astroscrappy pydantic pydantic-core annotated-types typing-inspection pims
    slicerator partd locket zict tblib tornado cachebox lazy-importer
)
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform any -d "$into" "${packages[@]}"
du -sh "$into"
