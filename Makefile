# nudge: see README.md. `make test` is what CI runs.
GO          ?= go
BIN         := bin/nudge
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEMO_RULES  := testdata/storefront/rules

.PHONY: all build test check bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/nudge

# Unit, corpus and CLI tests (with the race detector), then the demo
# storefront's own rule tests through the real binary.
test: build
	$(GO) test -race -count=1 ./...
	./$(BIN) rules check $(DEMO_RULES)
	./$(BIN) rules test $(DEMO_RULES)

# gofmt, go vet, staticcheck and the import-direction lint.
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^testdata/')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) test -count=1 -run TestImportDirection ./cmd/nudge

# Go micro-benchmarks of the hot code.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Fuzz the rule loader (FUZZTIME=10m for a long run).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME) ./rules

clean:
	rm -rf bin
