#!/usr/bin/env bash
# Policy-language costs: selector parse and match (20-label endpoint), and
# reference-evaluator decisions per second with 1,000 policies and 10,000
# endpoints. Results go to docs/PERFORMANCE.md with their conditions.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), $(go version), load $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench 'BenchmarkParse$|BenchmarkEvaluate$|BenchmarkEvaluateMiss$' -benchmem -count "${COUNT:-5}" ./policy/selector
go test -run '^$' -bench 'BenchmarkEvaluate' -benchmem -count "${COUNT:-5}" ./policy
