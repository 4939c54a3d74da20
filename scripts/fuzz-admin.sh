#!/usr/bin/env bash
# Fuzzes the admin API from its own OpenAPI document with schemathesis: starts the debug
# binary that `swift build` made (nothing is built here) on free ports with an in-memory
# store and a throwaway admin token, then runs schemathesis against
# /admin/v1/openapi.json. Fails on any 5xx, any answer that does not match the document,
# or any undocumented status code. Bounded in time: about 15 s, at most 150 s.
#
#   scripts/fuzz-admin.sh                 # schemathesis on PATH, .build/debug/tollgate
#   TOLLGATE_BIN=... SCHEMATHESIS=... scripts/fuzz-admin.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${TOLLGATE_BIN:-.build/debug/tollgate}
schemathesis=${SCHEMATHESIS:-schemathesis}
examples=${FUZZ_MAX_EXAMPLES:-100}
# schemathesis runs in the scratch folder (it writes a .schemathesis folder where it runs).
case $schemathesis in /*) ;; */*) schemathesis=$PWD/$schemathesis ;; esac
if [ ! -x "$bin" ]; then
    echo "fuzz-admin: $bin is missing: run 'swift build' first (or set TOLLGATE_BIN)" >&2
    exit 1
fi

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A token for this run only, in a file only we can read (never in the server's argv).
token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && printf '%s\n' "$token" > "$work/token")

"$bin" serve --store memory: --port 0 --admin-port 0 --admin-token-file "$work/token" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 100); do
    grep -q '^Control plane: ' "$work/out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
url=$(sed -n 's/^Control plane: //p' "$work/out")
if [ -z "$url" ]; then
    echo "fuzz-admin: the server did not start:" >&2
    cat "$work/err" >&2
    exit 1
fi
echo "fuzz-admin: fuzzing $url/admin/v1 with $($schemathesis --version)"

status=0
(cd "$work" && timeout 150 "$schemathesis" run "$url/admin/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance \
    --max-examples "$examples" \
    --seed 7 \
    --generation-database none \
    --request-timeout 10 \
    --no-color) || status=$?

if ! kill -0 "$pid" 2>/dev/null; then
    echo "fuzz-admin: the server died during the fuzz:" >&2
    cat "$work/err" >&2
    status=1
fi
if grep -q "control plane request failed" "$work/err"; then
    echo "fuzz-admin: the server logged failed requests:" >&2
    grep "control plane request failed" "$work/err" | head -20 >&2
    status=1
fi
exit $status
