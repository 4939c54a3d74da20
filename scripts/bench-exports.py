#!/usr/bin/env python3
"""Measure the data plane alone and while usage exports run on the control plane.

Imports --keys keys into a new SQLite store in a temporary folder (removed afterwards),
starts `tollgate serve` on it with an admin token, and drives an admitted `/api1` with wrk
on loopback, alone and while --exports clients each fetch `GET /admin/v1/usage?format=json`
over and over. Prints req/s, p50 and p99 for both, and how many exports finished a second.

With --baseline OTHER_BINARY, both binaries are measured, each on its own copy of the
store, interleaved run by run, so that a noisy machine treats them alike.

    python3 scripts/bench-exports.py --binary .build/release/tollgate --baseline /tmp/tollgate-before
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (write_keys, run_wrk, start_server)

TOKEN = "bench-admin-token-0123456789abcdef"


def start(binary, directory, name, keys_file, event_loops):
    store = "sqlite:" + os.path.join(directory, name + ".sqlite")
    imported = subprocess.run([binary, "keys", "import", keys_file, "--store", store],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if imported.returncode != 0:
        sys.exit("bench-exports: keys import failed: " + imported.stderr)
    token_file = os.path.join(directory, name + ".token")
    with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(TOKEN + "\n")
    process, port = bench.start_server(binary, store, directory, name, event_loops, ["--admin-token-file", token_file])
    with open(os.path.join(directory, name + ".out")) as f:
        admin = int(f.read().split("Control plane: http://")[1].split("\n")[0].rsplit(":", 1)[1])
    return process, port, admin


class Exporters:
    """`count` clients, each fetching the whole JSON export again as soon as it ends."""

    def __init__(self, admin_port, count):
        self.url = "http://127.0.0.1:%d/admin/v1/usage?format=json" % admin_port
        self.count = count
        self.stop = threading.Event()
        self.finished = 0
        self.failed = 0
        self.bytes = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(count)]

    def loop(self):
        while not self.stop.is_set():
            result = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                     "-H", "Authorization: Bearer " + TOKEN, self.url], capture_output=True, text=True)
            status, size = (result.stdout.split() + ["0", "0"])[:2]
            with self.lock:
                if status == "200":
                    self.finished += 1
                    self.bytes += int(size)
                else:
                    self.failed += 1

    def __enter__(self):
        self.started = time.time()
        for thread in self.threads:
            thread.start()
        time.sleep(1)  # every client mid-export before wrk starts
        return self

    def __exit__(self, *_):
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.seconds = time.time() - self.started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="the tollgate binary to measure")
    parser.add_argument("--baseline", help="another tollgate binary, measured interleaved with --binary")
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the store (default: 100000)")
    parser.add_argument("--exports", type=int, default=4, help="concurrent export clients (default: 4)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default: 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario; the median is reported (default: 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default: 64)")
    parser.add_argument("--event-loops", type=int, help="serve --event-loops (default: serve's own)")
    args = parser.parse_args()
    binaries = [("this build", os.path.abspath(args.binary))] + ([("baseline", os.path.abspath(args.baseline))] if args.baseline else [])
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-exports-") as directory:
        keys_file = os.path.join(directory, "keys.ndjson")
        bench.write_keys(keys_file, args.keys)
        servers = {name: start(binary, directory, "serve-%d" % index, keys_file, args.event_loops)
                   for index, (name, binary) in enumerate(binaries)}
        results = {}
        try:
            for name, (_, port, _) in servers.items():
                bench.run_wrk(port, "/api1", "token: bench-key", 2, args.connections, directory)  # warm-up
            for run in range(args.runs):
                for name, (_, port, admin) in servers.items():
                    alone = bench.run_wrk(port, "/api1", "token: bench-key", args.duration, args.connections, directory)
                    with Exporters(admin, args.exports) as exporters:
                        loaded = bench.run_wrk(port, "/api1", "token: bench-key", args.duration, args.connections, directory)
                    rate = exporters.finished / exporters.seconds
                    results.setdefault(name, {"alone": [], "exports": [], "rate": [], "failed": 0})
                    results[name]["alone"].append(alone)
                    results[name]["exports"].append(loaded)
                    results[name]["rate"].append(rate)
                    results[name]["failed"] += exporters.failed
                    size = exporters.bytes / max(1, exporters.finished) / 1e6
                    print("run %d %-10s alone %8.0f req/s p99 %6.2f ms | %d exports %8.0f req/s p99 %6.2f ms, "
                          "%.2f exports/s of %.1f MB" % (run + 1, name, alone[0], alone[2], args.exports, loaded[0],
                                                         loaded[2], rate, size), flush=True)
        finally:
            for process, _, _ in servers.values():
                process.terminate()
                process.wait()
    print("\n%d keys, wrk -t1 -c%d -d%ds on /api1, %d concurrent JSON exports, medians of %d runs:" % (
        args.keys, args.connections, args.duration, args.exports, args.runs))
    print("| build | data plane alone req/s | p50 ms | p99 ms | with exports req/s | p50 ms | p99 ms | ratio | exports/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, result in results.items():
        alone = [statistics.median(r[i] for r in result["alone"]) for i in range(3)]
        loaded = [statistics.median(r[i] for r in result["exports"]) for i in range(3)]
        print("| %s | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2fx | %.2f |" % (
            name, alone[0], alone[1], alone[2], loaded[0], loaded[1], loaded[2], loaded[0] / alone[0],
            statistics.median(result["rate"])))
        if result["failed"]:
            print("(%s: %d exports failed)" % (name, result["failed"]))


if __name__ == "__main__":
    main()
