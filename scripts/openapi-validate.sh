#!/usr/bin/env bash
# Validates the checked-in OpenAPI spec (docs/swagger.json) with an
# implementation independent of swag (kin-openapi: OpenAPI 2 -> 3, then
# validation), and checks that the Gin routes and the spec's paths are the
# same set and that every error code is documented. The HTTP tests of api/
# also validate each request and answer against the spec.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -run '^(TestSpecIsValidOpenAPI|TestRoutesMatchSpec|TestErrorCodesDocumented)$' ./api/
echo "docs/swagger.json is valid OpenAPI and matches the routes"
