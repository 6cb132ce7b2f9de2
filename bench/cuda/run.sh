#!/usr/bin/env bash
# run.sh — run on the GPU host from the repository root (binaries built
# here with scripts/cuda/build.sh, the peer script copied to peer/):
#   1. the peer measurement (transformers, peer/peer_transformers.py)
#   2. ptqgate's calibration benchmark on the same GPU (bin/bench-cuda -mode calib)
#   3. the streamed-weights memory proof for 4, 12 and 48 layers
# Results go to $OUT (default ./bench-out).
set -uo pipefail
out="${OUT:-bench-out}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
steps="${STEPS:-peer calib memory}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.csv" 2>&1
date -u +%Y-%m-%dT%H:%M:%SZ >"$out/date.txt"
for s in $steps; do
	case "$s" in
	peer)
		(cd peer && OUT="$out" python peer_transformers.py) >"$out/peer.log" 2>&1
		echo "peer rc=$?"
		;;
	calib)
		bin/bench-cuda -mode calib -out "$out/bench_calib.json" >"$out/bench_calib.log" 2>&1
		echo "calib rc=$?"
		;;
	memory)
		bin/bench-cuda -mode memory -layers "${MEM_LAYERS:-4,12,48}" -out "$out/bench_memory.json" >"$out/bench_memory.log" 2>&1
		echo "memory rc=$?"
		;;
	esac
done
