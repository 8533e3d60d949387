#!/usr/bin/env bash
# The engine comparison tables of docs/benchmarks.md: every engine on the small
# neuro and astro workloads, 1 and 2 workers. Needs `pip install -e ".[bench]"`
# and Java 17+ for Spark. Usage: benchmarks/engines.sh [OUT]
set -euo pipefail
out=${1:-bench}
sciimg bench neuro --size small --subjects 1,2 --workers 1,2 \
  --out "$out/neuro" --cache "$out/data"
sciimg bench astro --size small --visits 2,4 --workers 1,2 \
  --out "$out/astro" --cache "$out/data"
