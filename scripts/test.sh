#!/usr/bin/env bash
# make test: everything, against real ZooKeeper, Kafka and Temporal.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "go vet"
go vet ./...
go vet -tags integration ./...

step "the checked-in OpenAPI spec matches the code (make docs)"
scripts/docs-check.sh
scripts/openapi-validate.sh

step "the Dockerfile passes hadolint (the compose file and the build stage: go test ./docker/)"
scripts/docker-lint.sh

step "unit and integration tests (-race) against a real stack"
scripts/test-stack.sh go test -race -tags integration -count=1 -timeout 40m ./...

step "short fuzz passes"
for target in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for fn in $(grep -h '^func Fuzz' "$target"/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do
    echo "fuzz $fn in $target"
    go test -run '^$' -fuzz "^${fn}\$" -fuzztime "${FUZZTIME:-15s}" "$target"
  done
done

step "make run smoke test: the dev command end to end with curl"
scripts/smoke-dev.sh

echo; echo "all tests passed"
