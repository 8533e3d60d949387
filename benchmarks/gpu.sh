#!/usr/bin/env bash
# Every GPU check of sciimg in one run, for a fresh machine with an NVIDIA GPU,
# its driver, CUDA and CuPy (a CUDA machine's usual Python stack):
#
#   benchmarks/gpu_wheels.sh .whl      # once, where pip can reach an index
#   benchmarks/gpu.sh [OUT]            # on the GPU machine, from the repository
#
# 1. installs what the machine lacks from the wheels in .whl, if there;
# 2. runs the tests marked gpu (the CuPy kernels against the CPU ones);
# 3. times each GPU kernel against the CPU fast one on HCP-size data;
# 4. runs one HCP-size phantom subject (287 volumes) end to end, device: gpu.
# Results go to OUT (default gpu-results): pytest.txt, gpu-kernels.{json,md},
# hcp-gpu.json. Meant to finish within 8 minutes on one H100/H200.
set -uo pipefail
out=${1:-gpu-results}
mkdir -p "$out"
py=${PYTHON:-python3}
if [ -d .whl ]; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/sciimg-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/sciimg-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    | tee "$out/gpu.txt"
status=0
echo "== tests marked gpu"
$py -m pytest -q -p no:cacheprovider -o addopts="--strict-markers -ra" -m gpu \
    tests/kernels/test_gpu_kernels.py tests/test_device.py 2>&1 \
    | tee "$out/pytest.txt" || status=1
echo "== kernels, CPU fast (1 core) against the GPU"
$py benchmarks/gpu_kernels.py --out "$out/gpu-kernels.json" \
    | tee "$out/gpu-kernels.md" || status=1
echo "== one HCP-size subject end to end, device: gpu"
$py benchmarks/hcp_subject.py --data "$out/data" --workers 1 --threads 4 \
    --device gpu --out "$out/hcp-gpu.json" || status=1
exit $status
