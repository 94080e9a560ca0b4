#!/usr/bin/env bash
# Runs every test of weft: vet, unit tests, the real-kernel and end-to-end
# tests (they need root: run this as root, or they skip with a message), and
# a short run of every fuzz target (FUZZTIME each, default 10s).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
FUZZTIME="${FUZZTIME:-10s}"

if [ "$(id -u)" != 0 ]; then
  echo "note: not root: the namespace and end-to-end tests will skip (run as root to run them)"
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 30m ./...

echo "== fuzz (${FUZZTIME} per target)"
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "-- $pkg $target"
    # Go's fuzzing coordinator can fail a target at the end of -fuzztime
    # with a bare "context deadline exceeded" and no failing input: a race
    # in the coordinator (go.dev/issue/75804, fixed in Go 1.27, not in
    # 1.26), seen here about once per CI run. That is not a finding, so such
    # a run is tried again, up to 3 attempts in all. A real finding (a
    # failing input written to testdata) fails at once.
    attempt=1
    while ! out=$(go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1); do
      echo "$out"
      if echo "$out" | grep -q "context deadline exceeded" && ! echo "$out" | grep -q "Failing input written" && [ "$attempt" -lt 3 ]; then
        attempt=$((attempt + 1))
        echo "-- $pkg $target: Go's fuzzing coordinator deadline race (go.dev/issue/75804), attempt $attempt of 3"
      else
        exit 1
      fi
    done
    echo "$out"
  done
done
echo "all tests passed"
