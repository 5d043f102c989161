// Package docker holds the production image (Dockerfile) and the compose
// file of the production shape (compose.yaml), and the tests that check
// them without Docker: the compose file against the Compose
// specification's JSON schema (testdata/compose-spec.json, from
// github.com/compose-spec/compose-spec, Apache-2.0), and the Dockerfile's
// build stage run in a clean copy of what it copies. scripts/docker-lint.sh
// lints the Dockerfile with hadolint.
package docker
