#!/usr/bin/env bash
# build.sh — build the CUDA artifacts (`make cuda`):
#   bin/ptqgate-cuda  ptqgate with the CUDA backend (started by ptqgate --device cuda)
#   bin/gpu.test      the GPU specs (suites/gpu, Label("gpu"))
#   bin/bench-cuda    the GPU benchmark driver (bench/cuda)
# CUDA 11.8 headers and the libcuda stub come from scripts/cuda/setup.sh
# when CGO_CFLAGS/CGO_LDFLAGS do not point at any.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
bin="${BIN:-bin}"
go="${GO:-go}"
if [ -z "${CGO_CFLAGS:-}" ] || [ -z "${CGO_LDFLAGS:-}" ]; then
	eval "$(scripts/cuda/setup.sh --print-env)"
	export CGO_CFLAGS CGO_LDFLAGS
fi
mkdir -p "$bin"
"$go" build -tags cuda -trimpath -o "$bin/ptqgate-cuda" ./cmd/ptqgate-cuda
"$go" test -tags cuda -trimpath -c -o "$bin/gpu.test" ./suites/gpu
"$go" build -tags cuda -trimpath -o "$bin/bench-cuda" ./bench/cuda
echo "built $bin/ptqgate-cuda $bin/gpu.test $bin/bench-cuda"
