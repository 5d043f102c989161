#!/usr/bin/env bash
# Run a command against a fresh real stack (ZooKeeper, Kafka, Temporal):
#
#   scripts/test-stack.sh go test -tags integration ./...
#
# Builds bin/cloudservers, starts `cloudservers stack` in the background with
# a fresh temporary data folder and free ports, waits until its endpoints file
# is written, runs the command with CLOUDSERVERS_ENDPOINTS=<that file> exported,
# and always stops the stack (also on failure or Ctrl-C). Exits with the
# command's exit code.
#
# The first run on a machine fetches the jars with Maven and builds the
# Temporal CLI into $CLOUDSERVERS_CACHE (default $HOME/.cache/cloudservers):
# minutes; the progress is shown.
#
# Environment:
#   CLOUDSERVERS_BIN            use this binary instead of building bin/cloudservers
#   CLOUDSERVERS_STACK_TIMEOUT  seconds to wait for the stack (default 2400: covers a first build)
#   CLOUDSERVERS_KEEP=1         keep the temporary data folder (and its logs/) afterwards
set -uo pipefail

if [ $# -eq 0 ]; then
	echo "usage: $0 <command> [args...]" >&2
	exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CLOUDSERVERS_BIN:-}
if [ -z "$bin" ]; then
	bin=$root/bin/cloudservers
	echo "test-stack: building $bin" >&2
	(cd "$root" && go build -o "$bin" ./cmd/cloudservers) || exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cloudservers-stack.XXXXXX") || exit 1
endpoints=$work/endpoints.json
stack_log=$work/stack.log
stack_pid=
tail_pid=
rc=1

cleanup() {
	trap - EXIT INT TERM
	[ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
	if [ -n "$stack_pid" ] && kill -0 "$stack_pid" 2>/dev/null; then
		echo "test-stack: stopping the stack (pid $stack_pid)" >&2
		kill -TERM "$stack_pid" 2>/dev/null
		for _ in $(seq 1 600); do # 60s
			kill -0 "$stack_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$stack_pid" 2>/dev/null; then
			echo "test-stack: the stack did not stop within 60s; killing it" >&2
			kill -KILL "$stack_pid" 2>/dev/null # its children die with it (Pdeathsig)
		fi
		wait "$stack_pid" 2>/dev/null
	fi
	if [ "$rc" -ne 0 ] || [ "${CLOUDSERVERS_KEEP:-}" = 1 ]; then
		echo "test-stack: stack output: $stack_log; component logs: $work/data/logs" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'rc=130; exit 130' INT
trap 'rc=143; exit 143' TERM

echo "test-stack: starting the stack in $work" >&2
"$bin" stack -data "$work/data" -endpoints-file "$endpoints" >"$stack_log" 2>&1 &
stack_pid=$!
# Show the stack's progress (a first run fetches and builds for minutes).
tail -n +1 -f "$stack_log" --pid="$stack_pid" >&2 &
tail_pid=$!

timeout=${CLOUDSERVERS_STACK_TIMEOUT:-2400}
deadline=$((SECONDS + timeout))
while [ ! -s "$endpoints" ]; do
	if ! kill -0 "$stack_pid" 2>/dev/null; then
		wait "$stack_pid"
		echo "test-stack: the stack exited (status $?) before it was ready; its output:" >&2
		tail -n 40 "$stack_log" >&2
		rc=1
		exit 1
	fi
	if [ "$SECONDS" -ge "$deadline" ]; then
		echo "test-stack: the stack was not ready within ${timeout}s" >&2
		rc=1
		exit 1
	fi
	sleep 0.2
done
sleep 0.3 # let the tail print the summary
kill "$tail_pid" 2>/dev/null
tail_pid=

export CLOUDSERVERS_ENDPOINTS=$endpoints
echo "test-stack: CLOUDSERVERS_ENDPOINTS=$endpoints; running: $*" >&2
"$@"
rc=$?
exit "$rc"
