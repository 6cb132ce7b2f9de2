#!/usr/bin/env bash
# cascade-qwen3_5.sh BIN OUTDIR: the bug report's four-bug cascade
# (DESIGN.md, INTERFACES.md "Fault injection") replayed on the Qwen3.5-MoE
# VLM fixture qwen3_5-moe-tiny (Gated DeltaNet + full-attention layers,
# shared expert, text model under model.language_model, vision tower).
#
# Clean runs must pass; each injected fault must be caught the way
# INTERFACES.md's fault table says:
#   hook-bypass  quantize exit 1, expert input quantizers uncalibrated, hooks missed
#   plural-match quantize exit 1, the enabling expert weight patterns matched nothing
#   format-gate  quantize --out exit 1 (export self-check), verify on the folder exit 1
#   vlm-layers   quantize with the layerwise recipe exit 1, naming the paths searched
# Steps that need quantize --out are skipped, with a line saying so, when
# this ptqgate's quantize has no --out yet. The script exits 1 when a clean
# run fails or a fault is not caught. Everything lands in OUTDIR: the
# fixture (model/), calib.json, logs/ (each command's stdout and stderr),
# reports/ (report JSON) and the exports.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 BIN OUTDIR" >&2
	exit 2
fi
bin=$1
out=$2
if [ ! -x "$bin" ]; then
	echo "$0: $bin is not an executable (build it with make build)" >&2
	exit 2
fi

mkdir -p "$out"
rm -rf "$out/model" "$out/logs" "$out/reports" "$out"/export-*
mkdir -p "$out/logs" "$out/reports"
model="$out/model"
calib="$out/calib.json"

failures=0
fail() {
	echo "   FAIL: $*"
	failures=$((failures + 1))
}

# run NAME WANT_EXIT CMD...: runs CMD with stdout and stderr logged, prints
# the exit code, the summary line and the error line, and checks the exit
# code. Sets $rc.
run() {
	local name=$1 want=$2
	shift 2
	rc=0
	"$@" >"$out/logs/$name.out" 2>"$out/logs/$name.err" || rc=$?
	local shown="$*"
	if [ "$1" = q ]; then
		shown="ptqgate quantize --model $model --calib $calib ${*:2}"
	fi
	echo "   \$ ${shown/#"$bin"/ptqgate}" | sed "s|$out/|OUTDIR/|g" | cut -c1-220
	echo "   exit $rc (want $want)"
	grep -hE '^(PASSED|FAILED)' "$out/logs/$name.out" | sed 's/^/   | /' || true
	grep -h '^ptqgate: ' "$out/logs/$name.err" | cut -c1-400 | sed 's/^/   | /' || true
	# The rules of the error findings table (rule @ target), once each.
	awk -F'│' '/^errors \(/ {e = 1; next} e && /^└/ {exit} e && NF > 3 && $2 !~ /^ *$/ && $2 !~ / rule / {
		gsub(/ /, "", $2); gsub(/ /, "", $3); print $2 " @ " $3 }' "$out/logs/$name.out" | sort -u | paste -sd, - |
		sed 's/,/, /g; s/^/   | error findings: /' | grep -v 'findings: $' || true
	if [ "$rc" -ne "$want" ]; then
		fail "$name exited $rc, want $want"
	fi
}

# expect NAME PATTERN DESCRIPTION: the step's output must match PATTERN.
expect() {
	if grep -qE "$2" "$out/logs/$1.out" "$out/logs/$1.err"; then
		echo "   caught: $3"
	else
		fail "$1: no output matches /$2/ ($3)"
	fi
}

has_out=false
if "$bin" quantize --help 2>&1 | grep -q -- '--out'; then
	has_out=true
fi
has_verify=false
if "$bin" verify --help >/dev/null 2>&1; then
	has_verify=true
fi

echo "== fixture qwen3_5-moe-tiny -> $model"
"$bin" fixture qwen3_5-moe-tiny --out "$model" --force
# Calibration batches: 3 batches x 2 sequences x 24 token ids (vocabulary 256),
# from a fixed linear congruential sequence.
awk 'BEGIN {
	x = 4017; printf "{\"batches\": ["
	for (b = 0; b < 3; b++) {
		printf "%s[", (b ? ", " : "")
		for (s = 0; s < 2; s++) {
			printf "%s[", (s ? ", " : "")
			for (t = 0; t < 24; t++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%s%d", (t ? ", " : ""), int(x / 65536) % 256 }
			printf "]"
		}
		printf "]"
	}
	print "]}"
}' >"$calib"

q() { "$bin" quantize --model "$model" --calib "$calib" "$@"; }
experts=nvfp4_experts_only-fp8_kv
layerwise=nvfp4_experts_only-fp8_kv_layerwise

echo "== clean runs (must pass)"
echo "-- quantize $experts, grouped experts"
run clean-grouped 0 q --recipe "$experts" --report "$out/reports/clean-grouped.json"
echo "-- quantize $experts, eager experts"
run clean-eager 0 q --recipe "$experts" --experts-impl eager --report "$out/reports/clean-eager.json"
echo "-- quantize $layerwise (layerwise finds model.language_model.layers)"
run clean-layerwise 0 q --recipe "$layerwise" --report "$out/reports/clean-layerwise.json"
if $has_out; then
	echo "-- quantize $experts --out, then verify"
	run clean-export 0 q --recipe "$experts" --out "$out/export-clean" --report "$out/reports/clean-export.json"
	if $has_verify; then
		run clean-verify 0 "$bin" verify "$out/export-clean" --report "$out/reports/clean-verify.json"
	fi
else
	echo "-- SKIPPED clean export: this ptqgate's quantize has no --out yet (export not wired into the CLI)"
fi

echo "== bug 1: hook-bypass (grouped experts skip the per-expert calibration hooks)"
run hook-bypass 1 q --recipe "$experts" --inject-fault hook-bypass --report "$out/reports/hook-bypass.json"
expect hook-bypass 'calib\.uncalibrated' "expert input quantizers have no amax (calib.uncalibrated)"
expect hook-bypass 'calib\.expert-hook-missed' "routed experts whose inputs never reached a hook (calib.expert-hook-missed)"
if $has_out && $has_verify; then
	echo "-- with --allow-uncalibrated the export omits the expert input_scales; verify must fail"
	run hook-bypass-export 0 q --recipe "$experts" --inject-fault hook-bypass --allow-uncalibrated --out "$out/export-hook-bypass"
	run hook-bypass-verify 1 "$bin" verify "$out/export-hook-bypass" --report "$out/reports/hook-bypass-verify.json"
	expect hook-bypass-verify 'input_scale' "verify names the missing input_scale tensors"
fi

echo "== bug 2: plural-match (recipe patterns miss plural per-expert quantizer names)"
run plural-match 1 q --recipe "$experts" --inject-fault plural-match --report "$out/reports/plural-match.json"
expect plural-match '^ptqgate: calibration failed.*calib\.(plural-unmatched|unmatched-pattern)' "enabling expert weight patterns matched nothing (recipe coverage error)"
expect plural-match 'enabling recipe pattern "[^"]*weight_quantizer' "the finding names the weight pattern"

echo "== bug 3: format-gate (export skips fused experts whose format query says none)"
if $has_out; then
	run format-gate 1 q --recipe "$experts" --inject-fault format-gate --out "$out/export-format-gate" --report "$out/reports/format-gate.json"
	expect format-gate 'self-check|export\.' "the export self-check finds enabled quantizers without tensors"
	if $has_verify; then
		run format-gate-verify 1 "$bin" verify "$out/export-format-gate" --report "$out/reports/format-gate-verify.json"
		expect format-gate-verify 'missing' "verify fails on the folder: quantized tensors and scales missing (cross-checked with ptqgate_report.json)"
	fi
else
	echo "-- SKIPPED format-gate: this ptqgate's quantize has no --out yet (export not wired into the CLI), so the export fault cannot be shown"
fi

echo "== bug 4: vlm-layers (layerwise discovery only looks for model.layers)"
run vlm-layers 1 q --recipe "$layerwise" --inject-fault vlm-layers --report "$out/reports/vlm-layers.json"
expect vlm-layers 'searched model\.layers;' "layerwise discovery names the paths it searched"
expect vlm-layers 'model\.language_model\.layers' "and where this VLM's decoder layers are"

echo
if [ "$failures" -ne 0 ]; then
	echo "cascade-qwen3_5: $failures check(s) FAILED (logs in $out/logs)"
	exit 1
fi
echo "cascade-qwen3_5: every clean run passed and every injected fault was caught (logs in $out/logs)"
