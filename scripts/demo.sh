#!/usr/bin/env bash
# make demo — ptqgate end to end on the CPU, in about a minute:
#   1. the main job: a tiny Qwen3-MoE fixture is quantized with the bug
#      report's recipe (nvfp4_experts_only-fp8_kv) with per-expert hook
#      accounting, exported in ModelOpt's unified HF format and verified
#      against the vLLM and SGLang loader contracts; reports are written;
#   2. the bug report (ModelOpt #1340) replayed: each bug of the cascade is
#      injected with --inject-fault and must be caught as INTERFACES.md's
#      fault table says (the VLM layer-discovery bug through
#      scripts/cascade-qwen3_5.sh on the Qwen3.5-MoE fixture).
# Usage: scripts/demo.sh [PTQGATE_BINARY]   (output folder: $DEMO_OUT, default demo-out)
# Exit 0 when the clean run passes and every fault is caught, else 1.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/bin/ptqgate}
out=${DEMO_OUT:-demo-out}
calib=$root/testdata/hf/qwen3-moe-tiny/calib.json
recipe=nvfp4_experts_only-fp8_kv

if [ ! -x "$bin" ]; then
  echo "demo: $bin is not an executable; run make demo (or make build first)" >&2
  exit 2
fi
rm -rf "$out"
mkdir -p "$out/logs"
log=$out/logs

if [ -t 1 ]; then
  green=$'\033[32m' red=$'\033[31m' dim=$'\033[2m' bold=$'\033[1m' off=$'\033[0m'
else
  green="" red="" dim="" bold="" off=""
fi
failures=0
skipped=0
ok() { printf '  %s✓%s %-13s %s\n' "$green" "$off" "$1" "$2"; }
bad() { printf '  %s✗ %-13s %s%s\n' "$red" "$1" "$2" "$off"; failures=$((failures + 1)); }
note() { printf '  %s- %-13s %s%s\n' "$dim" "$1" "$2" "$off"; skipped=$((skipped + 1)); }
header() { printf '\n%s%s%s\n' "$bold" "$1" "$off"; }

# run NAME CMD...: runs CMD, stdout and stderr to logs/NAME.{out,err}; sets rc.
run() {
  local name=$1
  shift
  rc=0
  "$@" >"$log/$name.out" 2>"$log/$name.err" || rc=$?
}
# seen NAME REGEX: the step's output matches.
seen() { grep -qE "$2" "$log/$1.out" "$log/$1.err"; }
# jsum FILE KEY: sums the numbers of "KEY": N lines of a JSON report.
jsum() { awk -v k="\"$2\":" '$1 == k { gsub(/,/, "", $2); s += $2 } END { print s + 0 }' "$1"; }
# jlen FILE KEY: the number of elements of the top-level array "KEY".
jlen() {
  awk -v k="\"$2\":" '$1 == k && $2 == "[]," { print 0; exit } $1 == k && $2 == "[" { in_ = 1; next }
    in_ && /^  [\]]/ { print n + 0; exit } in_ && /^    [^ }\]]/ { n++ }' "$1"
}
# count REGEX FILE: lines matching.
count() { grep -cE "$1" "$2" || true; }
# section FILE TITLE: prints a table of a text report, from its title line to the table's end.
section() { awk -v t="$2" 'index($0, t) == 1 { p = 1 } p { print "    " $0 } p && /^└/ { exit }' "$1"; }

has_out=false
"$bin" quantize --help 2>/dev/null | grep -q -- '--out' && has_out=true
has_verify=false
"$bin" verify --help >/dev/null 2>&1 && has_verify=true

printf '%sptqgate demo%s — quantize a tiny MoE with per-expert accounting, gate it for vLLM and SGLang,\n' "$bold" "$off"
printf 'then replay the bug report that motivated it. Output: %s/ (full logs in %s/logs/)\n' "$out" "$out"

header "1. The main job: quantize → export → verify"
ok build "$("$bin" version)"

run fixture "$bin" fixture qwen3-moe-tiny --out "$out/model"
if [ "$rc" -eq 0 ]; then
  ok fixture "qwen3-moe-tiny: 2 MoE layers × 8 experts, top-2, bf16; expert 7 of layer 1 unreachable by design"
else
  bad fixture "exit $rc (see $log/fixture.err)"
fi
q() { "$bin" quantize --model "$out/model" --calib "$calib" "$@"; }

export_args=()
$has_out && export_args=(--out "$out/export")
run quantize q --recipe "$recipe" --report "$out/report.json" ${export_args[@]+"${export_args[@]}"}
if [ "$rc" -eq 0 ]; then
  tokens=$(sed -nE 's/.*over [0-9]+ batches \(([0-9]+) tokens\).*/\1/p' "$log/quantize.err")
  calls=$(( $(jsum "$out/report.json" gate_up_calls) + $(jsum "$out/report.json" down_calls) ))
  ok quantize "$recipe, $tokens tokens: $(jlen "$out/report.json" quantizers) quantizers, $(jlen "$out/report.json" uncalibrated) uncalibrated; $calls per-expert hook calls; experts without tokens: $(jlen "$out/report.json" experts_without_tokens) (named)"
else
  bad quantize "exit $rc (see $log/quantize.err)"
fi

run eager q --recipe "$recipe" --experts-impl eager --report "$out/eager.json"
run modes "$bin" report diff "$out/report.json" "$out/eager.json"
if [ "$rc" -eq 0 ] && seen modes '0 regressions'; then
  ok "expert modes" "grouped and eager execution give identical amax and hook counts (the toolkit's grouped path counted 0)"
else
  bad "expert modes" "the expert modes disagree (see $log/modes.out)"
fi

if $has_out; then
  if [ -f "$out/export/ptqgate_report.json" ]; then
    ok export "$(sed -nE 's/^exported ([0-9]+) tensors to .* \((.*)\)$/\1 tensors, \2/p' "$log/quantize.err") → $out/export"
  else
    bad export "no export in $out/export (see $log/quantize.err)"
  fi
else
  note export "skipped: this ptqgate's quantize has no --out yet (export not wired into the CLI)"
fi

if $has_out && $has_verify; then
  run verify "$bin" verify "$out/export" --target vllm --target sglang --report "$out/verify.json" --junit "$out/verify.junit.xml"
  summary=$(grep -E '^(PASSED|FAILED)' "$log/verify.out")
  checks=$(sed -nE 's/^checks: ([0-9]+) evaluated.*/\1/p' "$log/verify.out")
  if [ "$rc" -eq 0 ]; then
    ok verify "vllm@main, sglang@main: $checks checks — $summary"
  else
    bad verify "exit $rc — $summary (see $log/verify.out)"
  fi
else
  note verify "skipped: $($has_verify && echo "no export to verify" || echo "this ptqgate has no verify command yet")"
fi

for f in report verify; do
  [ -f "$out/$f.json" ] || continue
  "$bin" report "$out/$f.json" --format html --out "$out/$f.html" >/dev/null 2>&1
  "$bin" report "$out/$f.json" --format md --out "$out/$f.md" >/dev/null 2>&1
done
ok reports "$(cd "$out" && ls -1 report.* verify.* 2>/dev/null | tr '\n' ' ')(in $out/)"

echo
section "$log/quantize.out" "experts per layer"
[ -f "$log/verify.out" ] && grep -E '^checks:' "$log/verify.out" | sed 's/^/    verify /'

header "2. The bug report, replayed: ModelOpt #1340 — calibration and export \"succeeded\", the model served token salad"

run hook-bypass q --recipe "$recipe" --inject-fault hook-bypass --json
if [ "$rc" -eq 1 ] && seen hook-bypass 'calib\.uncalibrated' && seen hook-bypass 'calib\.expert-hook-missed'; then
  calls=$(( $(jsum "$log/hook-bypass.out" gate_up_calls) + $(jsum "$log/hook-bypass.out" down_calls) ))
  ok hook-bypass "grouped experts skip the hook → quantize exit 1: $(jlen "$log/hook-bypass.out" uncalibrated) expert input quantizers uncalibrated, $calls expert hook calls"
else
  bad hook-bypass "not caught: quantize exit $rc (want 1 naming calib.uncalibrated; see $log/hook-bypass.err)"
fi
if $has_out && $has_verify; then
  run hook-bypass-export q --recipe "$recipe" --inject-fault hook-bypass --allow-uncalibrated --out "$out/export-hook-bypass"
  run hook-bypass-verify "$bin" verify "$out/export-hook-bypass"
  "$bin" inspect "$out/export" --json >"$log/clean-inspect.json" 2>/dev/null
  "$bin" inspect "$out/export-hook-bypass" --json >"$log/hook-bypass-inspect.json" 2>/dev/null
  pattern='"name": "[^"]*experts\.[0-9]+\.[a-z_]+\.input_scale"'
  have=$(count "$pattern" "$log/hook-bypass-inspect.json") want=$(count "$pattern" "$log/clean-inspect.json")
  if [ "$rc" -eq 1 ] && seen hook-bypass-verify 'census\.missing-tensor'; then
    ok hook-bypass "exported anyway (--allow-uncalibrated): $have of $want expert input_scale → verify exit 1, census.missing-tensor"
  else
    bad hook-bypass "verify did not fail the export without input_scale (exit $rc; see $log/hook-bypass-verify.out)"
  fi
fi

run plural-match q --recipe "$recipe" --inject-fault plural-match
pattern=$(sed -nE 's/.*enabling recipe pattern "([^"]+)".*/\1/p' "$log/plural-match.err" | head -1)
if [ "$rc" -eq 1 ] && seen plural-match 'calib\.(unmatched-pattern|plural-unmatched)'; then
  ok plural-match "wildcards miss weight_quantizers.N → quantize exit 1: '${pattern:-?}' matched no expert"
else
  bad plural-match "not caught: quantize exit $rc (want 1 with a recipe coverage error; see $log/plural-match.err)"
fi

if $has_out; then
  run format-gate q --recipe "$recipe" --inject-fault format-gate --out "$out/export-format-gate"
  frc=$rc
  vrc=-
  if $has_verify && [ -d "$out/export-format-gate" ]; then
    run format-gate-verify "$bin" verify "$out/export-format-gate"
    vrc=$rc
  fi
  if [ "$frc" -eq 1 ] && seen format-gate 'self-check' && { [ "$vrc" = - ] || { [ "$vrc" -eq 1 ] && seen format-gate-verify 'report\.missing-tensor'; }; }; then
    ok format-gate "export skips fused experts → quantize --out exit 1 (self-check), verify exit $vrc (report.missing-tensor)"
  else
    bad format-gate "not caught: quantize --out exit $frc, verify exit $vrc (want 1 and 1; see $log/format-gate.err)"
  fi
else
  note format-gate "skipped: needs quantize --out (export not wired into the CLI yet)"
fi

cascade=$root/scripts/cascade-qwen3_5.sh
if [ -x "$cascade" ]; then
  run cascade "$cascade" "$bin" "$out/cascade-qwen3_5"
  vlm=$out/cascade-qwen3_5/logs/vlm-layers.err
  if [ "$rc" -eq 0 ] && [ -f "$vlm" ] && grep -q 'searched model\.layers' "$vlm"; then
    ok vlm-layers "Qwen3.5-MoE VLM, layerwise: discovery searched model.layers only → exit 1, naming model.language_model.layers"
    ok cascade "$(tail -1 "$log/cascade.out" | sed 's/^cascade-qwen3_5: //')"
  else
    bad vlm-layers "scripts/cascade-qwen3_5.sh exit $rc: $(tail -1 "$log/cascade.out") (see $log/cascade.out)"
  fi
else
  note vlm-layers "skipped: scripts/cascade-qwen3_5.sh (Qwen3.5-MoE cascade) is not in this checkout yet"
fi

echo
if [ "$failures" -ne 0 ]; then
  printf '%sFAILED%s: %d step(s) above did not behave (logs in %s/logs)\n' "$red" "$off" "$failures" "$out"
  exit 1
fi
if [ "$skipped" -ne 0 ]; then
  printf '%sPASSED%s with %d step(s) skipped: everything this build can do behaved; the skipped steps need parts not in it yet.\n' "$green" "$off" "$skipped"
  printf 'Open %s/report.html (calibration accounting).\n' "$out"
  exit 0
fi
printf '%sPASSED%s: the clean checkpoint is verified for vLLM and SGLang and every injected fault was caught.\n' "$green" "$off"
printf 'Open %s/report.html (calibration accounting) and %s/verify.html (loader contracts).\n' "$out" "$out"
