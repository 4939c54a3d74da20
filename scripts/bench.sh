#!/usr/bin/env bash
# Benchmarks the gateway against its own floor: builds in release, then runs
# scripts/bench.py (wrk on loopback). Options go to bench.py; --help lists them.
#   scripts/bench.sh                       # 1, 10,000 and 1,000,000 keys, 5 s x 3 runs each
#   scripts/bench.sh --keys 1 --duration 3 --runs 1
set -euo pipefail
cd "$(dirname "$0")/.."
for argument in "$@"; do
    case "$argument" in
    -h | --help) exec python3 scripts/bench.py --binary .build/release/tollgate --help ;;
    esac
done
if ! command -v wrk >/dev/null; then
    echo "bench: wrk is missing: install it with 'apt-get install -y wrk'" >&2
    exit 1
fi
swift build -c release --product tollgate >&2
exec python3 scripts/bench.py --binary .build/release/tollgate "$@"
