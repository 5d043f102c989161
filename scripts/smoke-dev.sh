#!/usr/bin/env bash
# Smoke test of `make run`: start `cloudservers dev` on a fresh data folder,
# create a server with curl, wait for it to be active with a public IP,
# stop dev and start it again on the same folder (the simulator keeps its
# cloud there too), check the server is still active in the API and in the
# simulator, delete it and check the simulator is left empty, check the
# Temporal UI lists its workflows by CustomerId, stop, and check that no
# process is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/cloudservers}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/cloudservers
data=$(mktemp -d)
log="$data/dev.out"
start_dev() {
  "$BIN" dev -data "$data" >>"$log" 2>&1 &
  dev=$!
}
start_dev
cleanup() {
  kill -TERM "$dev" 2>/dev/null || true
  wait "$dev" 2>/dev/null || true
  left=$(pgrep -f -- "$data" || true)
  if [ -n "$left" ]; then
    echo "FAIL: processes left after stop: $left" >&2
    ps -o pid,args -p $left >&2 || true
    kill -9 $left 2>/dev/null || true
    exit 1
  fi
  rm -rf "$data"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -50 "$log" >&2; exit 1; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

wait_ready() {
  for _ in $(seq 600); do
    [ -f "$data/endpoints.json" ] && break
    kill -0 "$dev" 2>/dev/null || fail "dev exited before it was ready"
    sleep 0.5
  done
  [ -f "$data/endpoints.json" ] || fail "dev not ready after 5 minutes"
}
wait_ready
E="$data/endpoints.json"
API=$(json 'd["api"]' <"$E")
KEY=$(json 'd["customers"][0]["api_key"]' <"$E")
CUSTOMER=$(json 'd["customers"][0]["customer_id"]' <"$E")
UI=$(json 'd["temporal_ui"]' <"$E")
grep -q "Swagger UI" "$log" || fail "dev did not print the Swagger UI URL"
curl -fsS "$API/swagger/index.html" >/dev/null || fail "Swagger UI not served"
curl -fsS "$UI" >/dev/null || fail "Temporal UI not served at $UI"

auth=(-H "Authorization: Bearer $KEY")
op=$(curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -H "Idempotency-Key: smoke-$$" \
  -d '{"name":"smoke-1","size":"s-1vcpu-64mb","image":"tiny","region":"region-one"}' "$API/v1/servers")
server=$(echo "$op" | json 'd["server_id"]')
echo "create accepted: server $server"
state=""
for _ in $(seq 120); do
  state=$(curl -fsS "${auth[@]}" "$API/v1/servers/$server" | json 'd["status"]+" "+d.get("public_ipv4","")')
  [[ "$state" == active\ * ]] && break
  [[ "$state" == error* ]] && fail "server went to error: $state"
  sleep 0.5
done
[[ "$state" =~ ^active\ [0-9.]+$ ]] || fail "server not active with a public IP: '$state'"
echo "server active: $state"

# Stop and start again on the same data folder: the API's read model
# (Kafka) and the simulator's cloud (openstacksim/state.json) both come back.
t0=$SECONDS
kill -TERM "$dev"
wait "$dev" || fail "dev did not stop cleanly"
[ -f "$data/openstacksim/state.json" ] || fail "the simulator saved no state"
start_dev
wait_ready
SIM=$(json 'd["sim_admin"]' <"$E")
echo "dev restarted in $((SECONDS - t0))s"
again=$(curl -fsS "${auth[@]}" "$API/v1/servers/$server" | json 'd["status"]+" "+d.get("public_ipv4","")')
[ "$again" = "$state" ] || fail "after the restart the API says '$again', before '$state'"
public=${state#active }
inv=$(curl -fsS "$SIM/inventory" | json '" ".join(s["status"]+"@"+",".join(f["address"] for f in d["floating_ips"] if f.get("port_id") in (s.get("ports") or [])) for s in d["servers"])')
[ "$inv" = "ACTIVE@$public" ] || fail "after the restart the simulator has '$inv', want the server ACTIVE with $public"
echo "after the restart: API and simulator both have the server active at $public"

curl -fsS -X DELETE "${auth[@]}" "$API/v1/servers/$server" >/dev/null
for _ in $(seq 120); do
  state=$(curl -fsS "${auth[@]}" "$API/v1/servers/$server" | json 'd["status"]')
  [ "$state" = deleted ] && break
  sleep 0.5
done
[ "$state" = deleted ] || fail "server not deleted: $state"
left=$(curl -fsS "$SIM/inventory" | json 'len(d["servers"])+len(d["ports"])+len(d["floating_ips"])')
[ "$left" = 0 ] || fail "the delete left $left servers, ports or floating IPs in the simulator: $(curl -fsS "$SIM/inventory")"
echo "server deleted, nothing left in the simulator"

T=$(json 'd["temporal"]' <"$E")
TEMPORAL=${CLOUDSERVERS_CACHE:-$HOME/.cache/cloudservers}/bin/temporal
n=$("$TEMPORAL" workflow list --address "$T" --namespace cloudservers --query "CustomerId='$CUSTOMER'" -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" -ge 3 ] || fail "want the lifecycle and two operation workflows for $CUSTOMER in Temporal, found $n"
echo "Temporal lists $n workflows for CustomerId=$CUSTOMER"
echo "smoke test passed"
