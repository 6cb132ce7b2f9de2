# ptqgate — the two commands that matter: `make demo` and `make test`.
GO      ?= go
BIN     ?= bin
GOFLAGS ?=
export GOFLAGS

# Where `make suites` and `make gate` put their reports.
REPORTS ?= out/reports
# `make gate CHECKPOINT=dir [TARGETS="vllm sglang@0.5.10"] [TP=2] [REFERENCE=dir]`
CHECKPOINT ?=
TARGETS    ?=
TP         ?=
REFERENCE  ?=

.PHONY: all build test vet unit suites demo gate bench fuzz cuda kernels clean

all: build

build:
	$(GO) build -o $(BIN)/ptqgate ./cmd/ptqgate

## test: go vet, then every unit test, fuzz seed corpus and Ginkgo suite (CPU only).
test: vet
	$(GO) test -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

## unit: the package tests only (no Ginkgo suites).
unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /suites/)

## suites: the Ginkgo suites through the ginkgo CLI, in parallel, with JUnit and JSON reports in $(REPORTS)/.
suites:
	$(GO) tool ginkgo -r -p --skip-package=gpu --label-filter='!gpu' --junit-report=junit.xml --json-report=report.json --output-dir=$(REPORTS) ./suites

## regression-RN: replay one regression catalogue entry, e.g. make regression-R12.
regression-%:
	$(GO) test -count=1 -v ./suites/regression -ginkgo.v -ginkgo.label-filter='$*'

## demo: the main job end to end on a built-in fixture, on the CPU.
demo: build
	./scripts/demo.sh $(BIN)/ptqgate

## gate: gate a quantized checkpoint (the CI job of ci/ptqgate-gate.sh); reports in $(REPORTS)/.
gate: build
	@test -n "$(CHECKPOINT)" || { echo "usage: make gate CHECKPOINT=dir [TARGETS=\"vllm sglang@0.5.10\"] [TP=n] [REFERENCE=dir]" >&2; exit 2; }
	PTQGATE_BIN=$(BIN)/ptqgate ./ci/ptqgate-gate.sh "$(CHECKPOINT)" $(foreach t,$(TARGETS),--target $(t)) \
		$(if $(TP),--tp $(TP)) $(if $(REFERENCE),--reference "$(REFERENCE)") --report-dir $(REPORTS)

## fuzz: run each fuzz target for FUZZTIME (their seed corpora also run in make test).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime $(FUZZTIME) ./ptqcore/safetensors
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./ptqcore/quant
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./verifier

## cuda: build bin/ptqgate-cuda, bin/gpu.test and bin/bench-cuda (fetches CUDA 11.8 headers from Debian when none are found).
cuda: build
	BIN=$(BIN) GO=$(GO) scripts/cuda/build.sh

## kernels: regenerate the embedded PTX from kernels/*.cu (nvcc 11.8, fetched like the headers).
kernels:
	scripts/cuda/kernels.sh

## bench: CPU benchmarks (numbers go to bench/RESULTS.md by hand, with the machine and date).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN) demo-out $(REPORTS)
