# Cloud Servers: the Makefile is the front door.
#   make run    the whole system on this machine (fetches and builds what is missing)
#   make test   every test, against real ZooKeeper, Kafka and Temporal started for it

SHELL := /bin/bash
GO ?= go
BIN := bin/cloudservers
SWAG := $(GO) run github.com/swaggo/swag/cmd/swag@v1.16.6

.PHONY: all build run run-ha stack stack-ha fetch fetch-ha test test-ha unit chaos chaos-ha bench bench-ha bench-report bench-micro docs docs-check histories check-tools clean

all: build

check-tools:
	@scripts/check-tools.sh

# Built as the image builds it (docker/Dockerfile: CGO off, -trimpath), so that the test that replays
# the image's build stage in a clean copy finds every package in the build cache (87 s for a cold build
# here, then 15 s for the test; 8 minutes for the test when the flags differed).
build: check-tools
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/cloudservers

## run: the whole system (ZooKeeper, Kafka, Temporal + UI, OpenStack simulator, API, two bridges, worker)
run: build
	./$(BIN) dev

## run-ha: the whole system on the HA topology (3 ZooKeeper, 3 Kafka brokers RF 3, Temporal server on PostgreSQL + UI,
##         2 API replicas, 3 bridges, 2 workers, the simulator), data in .data/ha
run-ha: build
	./$(BIN) dev -topology ha

## stack-ha: only the HA infrastructure
stack-ha: build
	./$(BIN) stack -topology ha

## fetch-ha: the jars, and build the Temporal server, temporal-sql-tool and the UI server into the cache
fetch-ha: build
	./$(BIN) stack -topology ha -fetch-only

## test-ha: start the HA topology and check it: 3 brokers, RF 3 / min ISR 2, the ZooKeeper quorum, Temporal shards, UI;
##          then kill -9 a broker (acks=all produce still succeeds) and the ZooKeeper leader (another is elected)
test-ha: build
	CLOUDSERVERS_HA=1 $(GO) test -race -tags integration -count=1 -v -timeout 20m -run 'TestHATopology' ./internal/devstack/

## chaos-ha: the whole system on the HA topology under load from 4 customers, with its shape checked as test-ha does;
##           kill -9 (and restart) of Kafka brokers, ZooKeeper members, the Temporal server, PostgreSQL, an API replica,
##           a worker, and 2 of 3 brokers at once; checks 0 lost / 0 duplicated / 0 leaked; prints HA-CHAOS table rows
chaos-ha: build
	CLOUDSERVERS_HA=1 $(GO) test -race -tags integration -count=1 -v -timeout 30m -run 'TestHAChaos' ./chaos/

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

## bench-ha: the benchmark report on the HA topology (the Temporal server on PostgreSQL, 3 brokers RF 3, 3 ZooKeeper):
##           bench/report-ha.json, bench/report-ha.png, beside make bench-report's dev-server figures
bench-ha: build
	./$(BIN) bench -topology ha -json bench/report-ha.json -picture bench/report-ha.png $(BENCH_FLAGS)

## bench-micro: the notification decoder and the router against their raw baselines (the router on a real Kafka)
bench-micro: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/notification/
	scripts/test-stack.sh $(GO) test -tags integration -run '^$$' -bench 'Router|CommitOffset' -benchtime 3000x -count 3 ./bridge/

## unit: the tests that need no engine
unit:
	$(GO) test -race ./...

## histories: record the replay histories of workflows/testdata/histories/latest on a Temporal dev server
## (ONLY=<scenario regexp> records only those, e.g. make histories ONLY=rebuild)
histories:
	$(GO) test -tags recordhistories -run 'TestRecordHistories$(if $(ONLY),/$(ONLY))' -count=1 -v ./workflows/

## docs: regenerate the OpenAPI spec in docs/ from the swag annotations
docs:
	$(GO) test ./api -run TestSpecFollowsTheOperations -count=1 -update-enums
	$(SWAG) init -g api/api.go -o docs --parseInternal -q

clean:
	rm -rf bin

## test-openstack: the e2e saga suite against a real OpenStack (the kit in $OPENSTACK_KIT), see docs/real-openstack.md
.PHONY: test-openstack
test-openstack: build
	@scripts/openstack-real.sh
