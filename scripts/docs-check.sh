#!/usr/bin/env bash
# Fails when docs/ (swag's generated spec) does not match the annotations.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go run github.com/swaggo/swag/cmd/swag@v1.16.6 init -g api/api.go -o "$tmp/docs" --parseInternal -q
for f in swagger.json swagger.yaml docs.go; do
  if ! diff -q "$tmp/docs/$f" "docs/$f" >/dev/null; then
    echo "docs/$f is stale: run 'make docs' and commit the result" >&2
    diff -u "docs/$f" "$tmp/docs/$f" | head -40 >&2
    exit 1
  fi
done
echo "docs/ matches the code"
