#!/usr/bin/env bash
# ptqgate-gate.sh — gate a quantized checkpoint in CI.
#
#   ci/ptqgate-gate.sh CHECKPOINT [--target ENGINE[@VERSION]]... [--tp N]
#                      [--reference DIR] [--report-dir DIR]
#
# Builds ptqgate and its gate suite (suites/gate) from this checkout, runs
# the suite on CHECKPOINT against the named targets (default: vllm and
# sglang, i.e. their newest loaders), and publishes into the report folder
# (default ./ptqgate-report, or $PTQGATE_REPORT_DIR):
#
#   junit.xml    one test case per (rule family, target), for your CI's test view
#   report.html  the self-contained HTML report (charts, every finding)
#   report.md    a summary that fits a pull-request comment
#   verify.json  ptqgate's report model (render it with `ptqgate report`)
#
# Exit code = the gate's verdict: 0 the checkpoint passes (warnings allowed),
# 1 a check failed, 2 a usage error (bad arguments, unknown target, missing
# folder, unsupported quantization format), 3 anything else.
# Needs Go >= 1.26; set PTQGATE_BIN to use an already built ptqgate.
set -euo pipefail

usage() {
  sed -n '3,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

root=$(cd "$(dirname "$0")/.." && pwd)
checkpoint=""
targets=()
tp=""
reference=""
report_dir=${PTQGATE_REPORT_DIR:-ptqgate-report}

while [ $# -gt 0 ]; do
  case "$1" in
    --target) [ $# -ge 2 ] || usage; targets+=("$2"); shift 2 ;;
    --target=*) targets+=("${1#--target=}"); shift ;;
    --tp) [ $# -ge 2 ] || usage; tp=$2; shift 2 ;;
    --tp=*) tp=${1#--tp=}; shift ;;
    --reference) [ $# -ge 2 ] || usage; reference=$2; shift 2 ;;
    --reference=*) reference=${1#--reference=}; shift ;;
    --report-dir) [ $# -ge 2 ] || usage; report_dir=$2; shift 2 ;;
    --report-dir=*) report_dir=${1#--report-dir=}; shift ;;
    -h|--help) usage ;;
    -*) echo "ptqgate-gate: unknown option $1" >&2; usage ;;
    *) [ -z "$checkpoint" ] || { echo "ptqgate-gate: more than one CHECKPOINT" >&2; usage; }; checkpoint=$1; shift ;;
  esac
done
[ -n "$checkpoint" ] || { echo "ptqgate-gate: no CHECKPOINT given" >&2; usage; }
[ -d "$checkpoint" ] || { echo "ptqgate-gate: $checkpoint is not a checkpoint folder" >&2; exit 2; }
if [ -n "$reference" ] && [ ! -d "$reference" ]; then
  echo "ptqgate-gate: --reference $reference is not a folder" >&2
  exit 2
fi

abs() { (cd "$1" && pwd); }
checkpoint=$(abs "$checkpoint")
[ -z "$reference" ] || reference=$(abs "$reference")
mkdir -p "$report_dir"
report_dir=$(abs "$report_dir")

go=${GO:-go}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== ptqgate gate: building ptqgate and the gate suite"
if [ -n "${PTQGATE_BIN:-}" ]; then
  ptqgate=$PTQGATE_BIN
else
  ptqgate=$work/ptqgate
  (cd "$root" && "$go" build -o "$ptqgate" ./cmd/ptqgate) || exit 3
fi
(cd "$root" && "$go" test -c -o "$work/gate.test" ./suites/gate) || exit 3
"$ptqgate" version

joined=$(IFS=,; echo "${targets[*]:-}")
echo "== ptqgate gate: $checkpoint (targets: ${joined:-vllm,sglang}${tp:+, tp $tp}${reference:+, reference $reference})"
set +e
(cd "$root/suites/gate" && \
  PTQGATE_CHECKPOINT="$checkpoint" PTQGATE_TARGETS="$joined" PTQGATE_TP="$tp" \
  PTQGATE_REFERENCE="$reference" PTQGATE_REPORT_DIR="$report_dir" \
  "$work/gate.test" -test.v -ginkgo.no-color -ginkgo.succinct)
rc=$?
set -e

if [ "$rc" -eq 2 ]; then
  echo "== ptqgate gate: configuration error (see above)"
  exit 2
fi
if [ -f "$report_dir/verify.json" ]; then
  echo "== ptqgate gate: findings"
  "$ptqgate" report "$report_dir/verify.json" --max-rows 40 || true
fi
echo "== ptqgate gate: reports in $report_dir"
ls -1 "$report_dir" | sed 's/^/   /'
case $rc in
  0) echo "== ptqgate gate: PASSED" ;;
  1) echo "== ptqgate gate: FAILED (see junit.xml and report.html)" ;;
  *) echo "== ptqgate gate: the gate suite crashed (exit $rc)"; exit 3 ;;
esac
exit "$rc"
