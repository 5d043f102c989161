#!/usr/bin/env bash
# One clear line per missing tool, naming what to install.
set -u
missing=0
need() { # need <command> <what to install>
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "missing: $1 — install $2" >&2
    missing=1
  fi
}
need go "Go 1.26 or newer (https://go.dev/doc/install)"
need java "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
need mvn "Maven (Debian: apt-get install maven); needed the first time, to fetch Kafka and ZooKeeper"
if [ "$missing" -ne 0 ]; then exit 1; fi
