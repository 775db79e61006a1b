# nudge: see README.md. `make test` is what CI runs.
GO          ?= go
BIN         := bin/nudge
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEMO_RULES  := testdata/storefront/rules
DEMO_DATA   := testdata/storefront/customers.jsonl
DATA        ?= data
ADDR        ?= 127.0.0.1:8080

.PHONY: all build run test check bench bench-quick soak fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/nudge

# Builds, imports the demo customers when the data directory is empty,
# and serves the demo storefront rules (console logs for people).
run: build
	@if [ -z "$$(ls -A $(DATA) 2>/dev/null)" ]; then \
		echo "importing the demo customers into $(DATA)/"; \
		./$(BIN) import --data $(DATA) $(DEMO_DATA); \
	fi
	./$(BIN) serve --addr $(ADDR) --rules $(DEMO_RULES) --data $(DATA) --log-format console

# Unit, corpus and CLI tests (with the race detector), the allocation
# tests of pooled code again without it, then the demo storefront's own
# rule tests through the real binary.
test: build
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run 'TestNoAllocationPerCandidate' ./engine/
	$(GO) test -count=1 -run 'TestLogMergerPooled' ./store/pebble/
	./$(BIN) rules check $(DEMO_RULES)
	./$(BIN) rules test $(DEMO_RULES)

# gofmt, go vet, staticcheck and the import-direction lint.
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^testdata/')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) test -count=1 -run TestImportDirection ./cmd/nudge

# Go micro-benchmarks, then the end-to-end run (1,000,000 customers, the
# demo and a 1,000-action ruleset, ceiling and nudge alternately, open
# loop, ingest, small cache) and its report in bench/results/ (< 15 min).
bench:
	GO=$(GO) ./bench/run.sh full

# The same on 100,000 customers with 2 s runs (< 2 min).
bench-quick:
	GO=$(GO) ./bench/run.sh quick

# Ten minutes of constant-rate load with nudge's RSS sampled (SOAK_DURATION).
soak:
	bash bench/soak.sh

# Fuzz the rule loader (FUZZTIME=10m for a long run).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME) ./rules

clean:
	rm -rf bin
