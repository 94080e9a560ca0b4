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
    # Go's fuzzing coordinator sometimes gives up on a worker of an
    # overloaded machine ("context deadline exceeded", no failing input):
    # that is not a finding, so such a run is tried once more. A real
    # finding (a failing input written to testdata) fails at once.
    if ! out=$(go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1); then
      echo "$out"
      if echo "$out" | grep -q "context deadline exceeded" && ! echo "$out" | grep -q "Failing input written"; then
        echo "-- $pkg $target: fuzzing coordinator timed out (machine busy), running it again"
        go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg"
      else
        exit 1
      fi
    else
      echo "$out"
    fi
  done
done
echo "all tests passed"
