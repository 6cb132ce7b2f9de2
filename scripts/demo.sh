#!/usr/bin/env bash
# make demo: build a tiny MoE fixture, inspect it. Later stages (quantize,
# export, verify, the bug-report cascade) are added as they land.
set -euo pipefail
ptqgate=${1:-bin/ptqgate}
out=${DEMO_OUT:-demo-out}
rm -rf "$out"
mkdir -p "$out"
echo "== ptqgate demo: writing fixture qwen3-moe-tiny to $out/model"
"$ptqgate" fixture qwen3-moe-tiny --out "$out/model"
echo "== inspecting $out/model"
"$ptqgate" inspect "$out/model"
