#!/usr/bin/env bash
# make test-openstack: the end-to-end saga suite (./e2e) against a REAL
# OpenStack instead of the simulator. See docs/real-openstack.md.
#
#   1. installs the OpenStack kit's Debian packages (idempotent: 0.3 s when done)
#   2. starts a fresh ZooKeeper/Kafka/Temporal stack (scripts/test-stack.sh)
#   3. starts the kit's OpenStack (up.sh) with Nova's notifications going to
#      that stack's Kafka (a cloud already running from the state dir is
#      restarted, so that it publishes to this run's Kafka)
#   4. runs `go test -tags integration ./e2e/` with CLOUDSERVERS_E2E_OPENSTACK=real
#      and the kit's clouds.yaml
#   5. stops the OpenStack (down.sh), then the stack; prints the timings
#
# Runs as root (the kit requires it); otherwise the kit's scripts are run
# through sudo. Exits with go test's exit code.
#
# Environment:
#   OPENSTACK_KIT        the kit's folder (install.sh, up.sh, down.sh); default
#                        ../shared/openstack next to the repository, when it exists
#   OPENSTACK_STATE      the kit's state dir (default: the kit's own default,
#                        /var/tmp/openstack-real); keep it to reuse the cloud:
#                        the next start is warm (~40 s instead of ~2 min)
#   OPENSTACK_E2E_RUN    go test -run pattern (default: every e2e test; those
#                        that need the simulator skip themselves)
#   OPENSTACK_E2E_TIMEOUT  go test -timeout (default 30m)
#   OPENSTACK_KEEP=1     leave the OpenStack running afterwards (it keeps
#                        publishing to a Kafka that is gone: the next run
#                        restarts it anyway)
#   CLOUDSERVERS_E2E_TRACE_DIR  write per-operation traces (JSON) there
#   plus scripts/test-stack.sh's variables (CLOUDSERVERS_BIN, CLOUDSERVERS_KEEP, ...)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
self=$root/scripts/openstack-real.sh

say() { printf '\n==> openstack-real: %s\n' "$*" >&2; }
die() { printf 'openstack-real: error: %s\n' "$*" >&2; exit 1; }
as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
# kit ENV... SCRIPT: run one of the kit's scripts as root with the kit's variables.
kit() {
	as_root env OPENSTACK_STATE="$OPENSTACK_STATE" "$@"
}
elapsed() { echo "$(($(date +%s) - $1))s"; }

inner() {
	# Running under scripts/test-stack.sh: the stack is up.
	# (globals: the EXIT trap reads them)
	t_stack_ready=$(date +%s)
	report() {
		printf '\nopenstack-real timings: install %s, stack %s, up.sh %s, go test %s, down.sh %s (total %s before the stack stops); go test exit %s\n' \
			"${OPENSTACK_T_INSTALL:-?}" "$(($t_stack_ready - OPENSTACK_T_STACK))s" "${t_up:-?}" "${t_test:-?}" "${t_down:-?}" \
			"$(elapsed "$OPENSTACK_T0")" "${rc:-?}" >&2
	}
	kafka=$(tr -d ' \n\t' <"$CLOUDSERVERS_ENDPOINTS" | sed -n 's/.*"kafka":\[\([^]]*\)\].*/\1/p' | tr -d '"')
	[ -n "$kafka" ] || die "no Kafka broker in $CLOUDSERVERS_ENDPOINTS"

	if ls "$OPENSTACK_STATE"/run/*.pid >/dev/null 2>&1; then
		say "stopping the OpenStack running from $OPENSTACK_STATE: it must publish to this run's Kafka ($kafka)"
		kit "$OPENSTACK_KIT/down.sh" >&2
	fi
	stop_cloud() {
		t=$(date +%s)
		if [ "${OPENSTACK_KEEP:-0}" = 1 ]; then
			say "OPENSTACK_KEEP=1: the OpenStack stays up (stop it with OPENSTACK_STATE=$OPENSTACK_STATE $OPENSTACK_KIT/down.sh)"
		else
			say "stopping the OpenStack (down.sh)"
			kit "$OPENSTACK_KIT/down.sh" >&2
		fi
		t_down=$(elapsed "$t")
	}
	trap 'stop_cloud; report' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	say "starting the OpenStack (up.sh; cold about 2 min, warm about 40 s), notifications to Kafka $kafka"
	t=$(date +%s)
	if ! kit OPENSTACK_KAFKA="$kafka" "$OPENSTACK_KIT/up.sh" >&2; then
		t_up=$(elapsed "$t")
		die "up.sh failed; logs in $OPENSTACK_STATE/logs"
	fi
	t_up=$(elapsed "$t")

	say "go test -tags integration ./e2e/ against the real OpenStack"
	t=$(date +%s)
	# Only the kit's cloud: no OS_* variable of the caller's environment.
	unset $(env | sed -n 's/^\(OS_[A-Z_]*\)=.*/\1/p')
	(cd "$root" && CLOUDSERVERS_E2E_OPENSTACK=real \
		OS_CLIENT_CONFIG_FILE="$OPENSTACK_STATE/clouds.yaml" OS_CLOUD=openstack-real \
		go test -tags integration -count=1 -v -timeout "${OPENSTACK_E2E_TIMEOUT:-30m}" \
		-run "${OPENSTACK_E2E_RUN:-.}" ./e2e/)
	rc=$?
	t_test=$(elapsed "$t")
	exit "$rc"
}

if [ "${1:-}" = --inner ]; then
	inner
	exit $?
fi

# --- outer: locate the kit, install, then run inner under a fresh stack -----
kit_dir=${OPENSTACK_KIT:-}
if [ -z "$kit_dir" ] && [ -d "$root/../shared/openstack" ]; then
	kit_dir=$root/../shared/openstack
fi
[ -n "$kit_dir" ] || die "set OPENSTACK_KIT to the folder of the OpenStack kit (install.sh, up.sh, down.sh); see docs/real-openstack.md"
for f in install.sh up.sh down.sh; do
	[ -f "$kit_dir/$f" ] || die "OPENSTACK_KIT=$kit_dir has no $f"
done
OPENSTACK_KIT=$(cd "$kit_dir" && pwd -P)
export OPENSTACK_KIT
export OPENSTACK_STATE=${OPENSTACK_STATE:-/var/tmp/openstack-real}
OPENSTACK_T0=$(date +%s)
export OPENSTACK_T0

say "installing the kit's packages (install.sh; about 5 min the first time, a no-op afterwards)"
t=$(date +%s)
as_root "$OPENSTACK_KIT/install.sh" >&2 || die "install.sh failed"
export OPENSTACK_T_INSTALL=$(elapsed "$t")

say "starting ZooKeeper, Kafka and Temporal (scripts/test-stack.sh)"
export OPENSTACK_T_STACK=$(date +%s)
exec "$root/scripts/test-stack.sh" "$self" --inner
