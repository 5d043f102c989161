# Cloud Servers: the Makefile is the front door.
#   make run    the whole system on this machine (fetches and builds what is missing)
#   make test   every test, against real ZooKeeper, Kafka and Temporal started for it

SHELL := /bin/bash
GO ?= go
BIN := bin/cloudservers
SWAG := $(GO) run github.com/swaggo/swag/cmd/swag@v1.16.6

.PHONY: all build run stack fetch test unit chaos bench bench-report bench-micro docs docs-check check-tools clean

all: build

check-tools:
	@scripts/check-tools.sh

build: check-tools
	@mkdir -p bin
	$(GO) build -o $(BIN) ./cmd/cloudservers

## run: the whole system (ZooKeeper, Kafka, Temporal + UI, OpenStack simulator, API, two bridges, worker)
run: build
	./$(BIN) dev

## stack: only ZooKeeper, Kafka and Temporal
stack: build
	./$(BIN) stack

## fetch: download the Kafka/ZooKeeper jars and build the Temporal CLI into the cache
fetch: build
	./$(BIN) stack -fetch-only

## test: unit and integration tests with -race against the real engines, the spec checks and a short fuzz pass
test: build
	@scripts/test.sh

## chaos: bridge processes killed, restarted and cut off ZooKeeper under load (also part of make test); prints TAKEOVER times
chaos: build
	scripts/test-stack.sh go test -race -tags integration -count=1 -v -timeout 30m ./chaos/

## bench: the benchmark report (the whole system beside raw baselines on the same engines, on a stack of its own:
##        table on stdout, bench/report.json, bench/report.png; flags in BENCH_FLAGS, e.g. BENCH_FLAGS="-n 200 -c 20"),
##        then the micro-benchmarks
bench: bench-report bench-micro

bench-report: build
	./$(BIN) bench $(BENCH_FLAGS)

## bench-micro: the notification decoder and the router against their raw baselines (the router on a real Kafka)
bench-micro: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/notification/
	scripts/test-stack.sh $(GO) test -tags integration -run '^$$' -bench 'Router|CommitOffset' -benchtime 3000x -count 3 ./bridge/

## unit: the tests that need no engine
unit:
	$(GO) test -race ./...

## docs: regenerate the OpenAPI spec in docs/ from the swag annotations
docs:
	$(SWAG) init -g api/api.go -o docs --parseInternal -q

clean:
	rm -rf bin

## test-openstack: the e2e saga suite against a real OpenStack (the kit in $OPENSTACK_KIT), see docs/real-openstack.md
.PHONY: test-openstack
test-openstack: build
	@scripts/openstack-real.sh
