#!/bin/sh
# Runs the data plane benchmark (bench/dataplane: throughput, join latency,
# planner) from the repository root and passes its flags through, e.g.
#   sudo bench/dataplane.sh -runs 5 -json > /tmp/dataplane.json
# Throughput and join need root and iperf3. Results, with their conditions,
# go into docs/PERFORMANCE.md by hand.
set -eu
cd "$(dirname "$0")/.."
if ! command -v iperf3 >/dev/null 2>&1; then
	echo "dataplane.sh: iperf3 is missing (apt-get install -y iperf3)" >&2
	exit 1
fi
exec go run ./bench/dataplane "$@"
