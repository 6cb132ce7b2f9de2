# ptqgate — the two commands that matter: `make demo` and `make test`.
GO      ?= go
BIN     ?= bin
GOFLAGS ?=
export GOFLAGS

.PHONY: all build test vet unit demo bench fuzz cuda kernels clean

all: build

build:
	$(GO) build -o $(BIN)/ptqgate ./cmd/ptqgate

## test: go vet, then every unit test, fuzz seed corpus and Ginkgo suite (CPU only).
test: vet
	$(GO) test -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

## demo: the main job end to end on a built-in fixture, on the CPU.
demo: build
	./scripts/demo.sh $(BIN)/ptqgate

## bench: CPU benchmarks (numbers go to bench/RESULTS.md by hand, with the machine and date).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN) demo-out
