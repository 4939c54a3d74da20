#!/usr/bin/env python3
"""Drive a release `tollgate serve` with wrk and compare each scenario with /healthz.

For each --store and --keys count, imports that many keys into a new store (a SQLite file,
or a redis-server the script starts) in a temporary folder (removed afterwards), starts a
server on it (two for redis2) and measures with wrk on loopback:
/healthz (the floor), an admitted /api1, a 429 on /api2, a repeated unknown key, and a
new random key per request (each one a store lookup). Prints req/s, its ratio to
/healthz, p50 and p99 latency, and the server's resident memory.

The box's ceiling is nginx (Debian's nginx-light, one worker) answering a static body
behind a header check, measured first in the same run: every figure is also given as a
ratio to it, and its p99 beside ours.

Machines here are noisy, so every scenario runs --runs times and the median is reported,
with its ratio to the /healthz median of the same server in the same run.

With --proxy it measures forwarding instead: one upstream (an nginx answering a static
body), reached directly, through nginx `proxy_pass` with no key check, and through
Tollgate proxying with a key check and a metered limit, in the same run; it prints req/s,
p50 and p99 and Tollgate's ratio to nginx (the target is at least 0.8x).
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SCENARIOS = [
    # name, path, header (or "random": a new unknown key per request, which the store must look up)
    ("healthz (floor)", "/healthz", None),
    ("api1 admitted", "/api1", "token: bench-key"),
    ("api2 429 spent", "/api2", "token: bench-key"),
    ("api1 401 unknown", "/api1", "token: bench-unknown-key"),
    ("api1 401 random", "/api1", "random"),
]

RANDOM_KEYS_LUA = """
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", nil, {["token"] = "bench-random-" .. math.random(1, 1000000000) .. "-" .. counter})
end
"""


def write_keys(path, count):
    """The one key the scenarios use (api1 never spent, api2 always spent), and count - 1
    others with known secrets (bench-k-0000000...), so that the last step can use every one
    of them once: count keys in all. Their ids are left to the import to generate, as a
    migration from the old service (whose keys have none) does."""
    with open(path, "w") as f:
        f.write(json.dumps({"key": "bench-key", "scopes": ["*"], "limits": ["api1:1000000000000/total", "api2:0/total"]}) + "\n")
        for i in range(count - 1):
            f.write('{"key":"bench-k-%07d","scopes":["api1"],"limits":["100/day"]}\n' % i)


EVERY_KEY_LUA = """
local counter = -1
init = function(args)
  counter = tonumber(args[1]) - 1
end
request = function()
  counter = counter + 1
  return wrk.format("GET", nil, {["token"] = string.format("bench-k-%%07d", counter %% %d)})
end
"""


def use_every_key(port, count, directory):
    """Uses each of the count - 1 other keys once (each wrk run starts where the last one
    stopped; wrk stops on time, so a few more than count requests are sent), so that the
    server holds them all."""
    script = os.path.join(directory, "every-key.lua")
    with open(script, "w") as f:
        f.write(EVERY_KEY_LUA % (count - 1))
    sent = 0
    started = time.time()
    while sent < count - 1 and time.time() - started < 600:
        output = subprocess.run(["wrk", "-t1", "-c64", "-d5s", "-s", script, "http://127.0.0.1:%d/api1" % port, "--", str(sent)],
                                capture_output=True, text=True, check=True).stdout
        sent += int(re.search(r"(\d+) requests in", output).group(1))
    return sent, time.time() - started


def start_redis(directory):
    """A throwaway redis-server on a free port (no persistence), for the Redis runs."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wait_for_port(port):
        return process, "redis://127.0.0.1:%d" % port
    process.kill()
    sys.exit("bench: redis-server did not start")


NGINX_CONF = """
worker_processes 1;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(dir)s/nginx-body;
    proxy_temp_path %(dir)s/nginx-proxy;
    fastcgi_temp_path %(dir)s/nginx-fastcgi;
    uwsgi_temp_path %(dir)s/nginx-uwsgi;
    scgi_temp_path %(dir)s/nginx-scgi;
    server {
        listen 127.0.0.1:%(port)d;
        keepalive_requests 1000000;
        location = /api1 {
            default_type text/plain;
            if ($http_token != "bench-key") { return 401; }
            return 200 "API1";
        }
    }
}
"""


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, seconds=10):
    """Whether something accepts connections on 127.0.0.1:port within `seconds`."""
    import socket
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def find_nginx():
    """Debian's nginx (nginx-light), on PATH or in /usr/sbin; None when not installed."""
    import shutil
    return shutil.which("nginx") or next((p for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] if os.access(p, os.X_OK)), None)


def start_nginx(directory):
    """nginx-light with one worker: a static answer behind a header check, the ceiling a
    gateway on this box is measured against."""
    nginx = find_nginx()
    if not nginx:
        return None, None
    port = free_port()
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF % {"dir": directory, "port": port})
    process = subprocess.Popen([nginx, "-c", conf, "-p", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wait_for_port(port):
        return process, port
    process.kill()
    return None, None


NGINX = {}  # connections -> (median req/s, median p99 ms)


def bench_nginx(args):
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-nginx-") as directory:
        process, port = start_nginx(directory)
        if not process:
            print("\n(nginx not found: install Debian's nginx-light for the ceiling figures)")
            return
        try:
            print("\n## nginx (one worker, static answer behind a header check): the ceiling")
            print("%-18s %10s %9s %9s" % ("connections", "req/s", "p50 ms", "p99 ms"))
            for connections in args.connections:
                run_wrk(port, "/api1", "token: bench-key", 1, connections, directory)
                runs = [run_wrk(port, "/api1", "token: bench-key", args.duration, connections, directory) for _ in range(args.runs)]
                rps = statistics.median(r[0] for r in runs)
                p99 = statistics.median(r[2] for r in runs)
                NGINX[connections] = (rps, p99)
                print("%-18s %10.0f %9.3f %9.3f" % ("c%d" % connections, rps, statistics.median(r[1] for r in runs), p99))
        finally:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def start_server(binary, store, directory, name="serve", event_loops=None, extra=()):
    out = open(os.path.join(directory, name + ".out"), "w+")
    err = open(os.path.join(directory, name + ".err"), "w")
    loops = ["--event-loops", str(event_loops)] if event_loops else []
    process = subprocess.Popen(
        [binary, "serve", "--store", store, "--port", "0", "--admin-port", "0", "--log-level", "warning", *loops, *extra],
        stdout=out, stderr=err, cwd=directory,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        out.seek(0)
        match = re.search(r"Data plane: http://[^:]+:(\d+)", out.read())
        if match:
            return process, int(match.group(1))
        if process.poll() is not None:
            sys.exit("bench: the server exited: " + open(os.path.join(directory, name + ".err")).read())
        time.sleep(0.05)
    process.kill()
    sys.exit("bench: the server did not start within 60 s")


def keys_held(directory, name):
    """tollgate_keys_held from the server's /metrics: the memory figure is per key held."""
    import urllib.request
    with open(os.path.join(directory, name + ".out")) as out:
        port = int(re.search(r"Control plane: http://[^:]+:(\d+)", out.read()).group(1))
    metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    return int(float(re.search(r"^tollgate_keys_held (\S+)$", metrics, re.M).group(1)))


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk_together(ports, path, header, duration, connections, directory):
    """wrk against several instances at once, connections split between them; req/s
    added up, latencies of the slowest."""
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(len(ports)) as pool:
        runs = list(pool.map(lambda port: run_wrk(port, path, header, duration, connections // len(ports), directory), ports))
    return (sum(r[0] for r in runs), max(r[1] for r in runs), max(r[2] for r in runs),
            sum(r[3] for r in runs), "; ".join(r[4] for r in runs if r[4]))


def run_wrk(port, path, header, duration, connections, directory):
    command = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration, "--latency"]
    if header == "random":
        script = os.path.join(directory, "random-keys.lua")
        with open(script, "w") as f:
            f.write(RANDOM_KEYS_LUA)
        command += ["-s", script]
    elif header:
        command += ["-H", header]
    command.append("http://127.0.0.1:%d%s" % (port, path))
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return rps, p50, p99, int(non2xx.group(1)) if non2xx else 0, errors.group(1) if errors else ""


def rss_mb(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


ADMITTED = {}  # store mode -> median admitted req/s, to compare stores in one run


def bench(binary, count, store_mode, args, event_loops):
    """One run on a fresh store in a temporary folder, removed afterwards, errors included."""
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as directory:
        bench_in(directory, binary, count, store_mode, args, event_loops)


def bench_in(directory, binary, count, store_mode, args, event_loops):
    redis = None
    instances = 1
    if store_mode.startswith("redis"):
        redis, store = start_redis(directory)
        instances = 2 if store_mode == "redis2" else 1
    else:
        store = "sqlite:" + os.path.join(directory, "bench.sqlite") + ("?synchronous=normal" if store_mode == "normal" else "")
    keys = os.path.join(directory, "keys.ndjson")
    write_keys(keys, count)
    started = time.time()
    # The spent limit's quota of 0 is meant: keep import's warning about it off the report.
    imported = subprocess.run([binary, "keys", "import", keys, "--store", store], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    if imported.returncode != 0:
        sys.exit("bench: keys import failed: " + imported.stderr)
    import_seconds = time.time() - started
    servers = [start_server(binary, store, directory, "serve%d" % i, event_loops) for i in range(instances)]
    ports = [port for _, port in servers]
    try:
        for _, path, header in SCENARIOS:  # warm up every path once
            run_wrk_together(ports, path, header, 1, args.connections[0], directory)
        results = {}  # connections -> scenario -> runs
        for connections in args.connections:
            for _ in range(args.runs):
                for name, path, header in SCENARIOS:
                    results.setdefault(connections, {}).setdefault(name, []).append(
                        run_wrk_together(ports, path, header, args.duration, connections, directory))
        rss, peak = rss_mb(servers[0][0].pid)
        held = None
        # Per key only means something over many keys.
        if count >= 1000 and not store_mode.startswith("redis"):
            sent, seconds = use_every_key(ports[0], count, directory)
            held = (sent, seconds) + rss_mb(servers[0][0].pid) + (keys_held(directory, "serve0"),)
    finally:
        for process, _ in servers:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if redis:
            redis.kill()
            redis.wait()
    label = {
        "full": "sqlite synchronous=full", "normal": "sqlite synchronous=normal",
        "redis": "redis, one instance", "redis2": "redis, two instances driven together",
    }[store_mode]
    for connections, by_name in results.items():
        floor = statistics.median(r[0] for r in by_name["healthz (floor)"])
        ceiling = NGINX.get(connections)
        print("\n## %s key%s, store %s, c%d, %s (import took %.1f s)" % (
            f"{count:,}", "" if count == 1 else "s", label, connections,
            "%d event loop%s" % (event_loops, "" if event_loops == 1 else "s") if event_loops else "event loops: one per core",
            import_seconds))
        print("%-18s %10s %8s %8s %9s %9s %8s %s" % (
            "scenario", "req/s", "ratio", "/nginx", "p50 ms", "p99 ms", "p99/ngx", "notes"))
        for name, _, _ in SCENARIOS:
            runs = by_name[name]
            rps = statistics.median(r[0] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            if name == "api1 admitted":
                ADMITTED[(store_mode, connections)] = rps
            notes = []
            expected_non2xx = not name.startswith(("healthz", "api1 admitted"))
            if not expected_non2xx and any(r[3] for r in runs):
                notes.append("UNEXPECTED non-2xx: %d" % sum(r[3] for r in runs))
            if any(r[4] for r in runs):
                notes.append("socket errors: " + "; ".join(r[4] for r in runs if r[4]))
            print("%-18s %10.0f %7.2fx %8s %9.3f %9.3f %8s %s" % (
                name, rps, rps / floor,
                "%.2fx" % (rps / ceiling[0]) if ceiling else "-",
                statistics.median(r[1] for r in runs), p99,
                "%.1fx" % (p99 / ceiling[1]) if ceiling else "-",
                ", ".join(notes)))
        embedded = ADMITTED.get(("full", connections)) or ADMITTED.get(("normal", connections))
        if store_mode.startswith("redis") and embedded:
            print("admitted on this store / admitted on SQLite in this run: %.2fx" % (
                ADMITTED[(store_mode, connections)] / embedded))
    print("server RSS after the runs: %.1f MiB (peak %.1f MiB)" % (rss, peak))
    if held:
        print("then every key used once (%d requests in %.0f s, each a first use: a lookup): %d keys held, RSS %.1f MiB "
              "(peak %.1f MiB), %.0f bytes per held key beyond the RSS before" % (
                  held[0], held[1], held[4], held[2], held[3], (held[2] - rss) * 1048576 / max(held[4], 1)))


def compare(count, args):
    """--baseline: the same scenarios on two binaries (each on its own SQLite file of the
    same keys), interleaved run by run and alternating which goes first, so that the
    machine's drift hits both alike; prints each one's median and the ratio."""
    binaries = [("baseline", args.baseline, []), ("measured", args.binary, args.binary_arg)]
    scenarios = [s for s in SCENARIOS if not args.scenarios or s[0] in args.scenarios]
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as directory:
        servers = {}
        try:
            for name, binary, extra in binaries:
                folder = os.path.join(directory, name)
                os.mkdir(folder)
                store = "sqlite:" + os.path.join(folder, "bench.sqlite")
                keys = os.path.join(folder, "keys.ndjson")
                write_keys(keys, count)
                subprocess.run([binary, "keys", "import", keys, "--store", store], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=True)
                extra = [a.replace("{dir}", folder) for a in extra]
                servers[name] = start_server(binary, store, folder, "serve", extra=extra)
            for name, _, _ in binaries:  # warm up every path once
                for _, path, header in scenarios:
                    run_wrk(servers[name][1], path, header, 1, args.connections, directory)
            results = {}
            for run in range(args.runs):
                order = binaries if run % 2 == 0 else list(reversed(binaries))
                for scenario, path, header in scenarios:
                    for name, _, _ in order:
                        results.setdefault((name, scenario), []).append(
                            run_wrk(servers[name][1], path, header, args.duration, args.connections, directory))
        finally:
            for process, _ in servers.values():
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    print("\n## %s key%s, sqlite synchronous=full; baseline %s; measured %s %s" % (
        f"{count:,}", "" if count == 1 else "s", args.baseline, args.binary, " ".join(args.binary_arg)))
    print("%-18s %12s %12s %8s %10s %10s %s" % (
        "scenario", "base req/s", "meas req/s", "ratio", "base p99", "meas p99", "runs (meas/base)"))
    for scenario, _, _ in scenarios:
        base, meas = results[("baseline", scenario)], results[("measured", scenario)]
        b, m = statistics.median(r[0] for r in base), statistics.median(r[0] for r in meas)
        print("%-18s %12.0f %12.0f %7.3fx %10.3f %10.3f %s" % (
            scenario, b, m, m / b, statistics.median(r[2] for r in base), statistics.median(r[2] for r in meas),
            " ".join("%.3f" % (x[0] / y[0]) for x, y in zip(meas, base))))


NGINX_UPSTREAM = """
worker_processes 1;
daemon off;
pid %(dir)s/upstream.pid;
error_log %(dir)s/upstream-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(dir)s/u-body; proxy_temp_path %(dir)s/u-proxy; fastcgi_temp_path %(dir)s/u-fcgi;
    uwsgi_temp_path %(dir)s/u-uwsgi; scgi_temp_path %(dir)s/u-scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%(port)d;
        location / { default_type text/plain; return 200 "hello from the upstream\n"; }
    }
}
"""

NGINX_PROXY = """
worker_processes auto;
daemon off;
pid %(dir)s/proxy.pid;
error_log %(dir)s/proxy-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(dir)s/p-body; proxy_temp_path %(dir)s/p-proxy; fastcgi_temp_path %(dir)s/p-fcgi;
    uwsgi_temp_path %(dir)s/p-uwsgi; scgi_temp_path %(dir)s/p-scgi;
    keepalive_requests 1000000;
    upstream api { server 127.0.0.1:%(upstream)d; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:%(port)d;
        location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://api; }
    }
}
"""


def start_proxy_nginx(directory, name, template, **values):
    port = free_port()
    path = os.path.join(directory, name + ".conf")
    user = "user root;\n" if os.getuid() == 0 else ""
    with open(path, "w") as f:
        f.write(user + template % dict(values, dir=directory, port=port))
    nginx = find_nginx()
    if nginx is None:
        sys.exit("bench: --proxy needs nginx: install it with 'apt-get install -y nginx-light'")
    process = subprocess.Popen([nginx, "-p", directory, "-e", os.path.join(directory, name + "-error.log"), "-c", path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wait_for_port(port):
        return process, port
    process.kill()
    sys.exit("bench: nginx (%s) did not start: %s" % (name, open(os.path.join(directory, name + "-error.log")).read()))


def bench_proxy(binary, store_mode, args, connections, event_loops=None):
    """nginx proxy_pass without a key check against Tollgate proxying with one, same upstream."""
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-proxy-") as directory:
        if store_mode.startswith("redis"):
            sys.exit("bench: --proxy measures the SQLite stores (full, normal)")
        store = "sqlite:" + os.path.join(directory, "bench.sqlite") + ("?synchronous=normal" if store_mode == "normal" else "")
        keys = os.path.join(directory, "keys.ndjson")
        with open(keys, "w") as f:
            f.write(json.dumps({"key": "bench-key", "scopes": ["*"], "limits": ["api*:1000000000000/total"]}) + "\n")
        subprocess.run([binary, "keys", "import", keys, "--store", store], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes = []
        try:
            upstream, upstream_port = start_proxy_nginx(directory, "upstream", NGINX_UPSTREAM)
            processes.append(upstream)
            proxy, proxy_port = start_proxy_nginx(directory, "proxy", NGINX_PROXY, upstream=upstream_port)
            processes.append(proxy)
            routes = os.path.join(directory, "routes.yaml")
            with open(routes, "w") as f:
                f.write("routes:\n  - name: api\n    upstream: http://127.0.0.1:%d\n    max_idle_connections: 64\n" % upstream_port)
            server = start_server(binary, store, directory, event_loops=event_loops, extra=["--config", routes])
            processes.append(server[0])
            scenarios = [
                ("upstream direct", upstream_port, None),
                ("nginx proxy_pass", proxy_port, None),
                ("tollgate proxy+key", server[1], "token: bench-key"),
            ]
            for _, port, header in scenarios:
                run_wrk(port, "/api/x", header, 1, connections, directory)
            results = {}
            for _ in range(args.runs):
                for name, port, header in scenarios:
                    results.setdefault(name, []).append(run_wrk(port, "/api/x", header, args.duration, connections, directory))
            rss, peak = rss_mb(server[0].pid)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        label = {"full": "sqlite synchronous=full", "normal": "sqlite synchronous=normal"}[store_mode]
        print("\n## proxying one upstream (nginx, static body), c%d; Tollgate's store: %s; %s; nginx proxy_pass: "
              "worker_processes auto (%d here)" % (
                  connections, label,
                  "%d event loop%s" % (event_loops, "" if event_loops == 1 else "s") if event_loops
                  else "event loops: one per core", os.cpu_count()))
        print("%-20s %10s %9s %9s %s" % ("scenario", "req/s", "p50 ms", "p99 ms", "notes"))
        medians = {}
        for name, _, _ in scenarios:
            runs = results[name]
            medians[name] = statistics.median(r[0] for r in runs)
            notes = []
            if any(r[3] for r in runs):
                notes.append("UNEXPECTED non-2xx: %d" % sum(r[3] for r in runs))
            if any(r[4] for r in runs):
                notes.append("socket errors: " + "; ".join(r[4] for r in runs if r[4]))
            print("%-20s %10.0f %9.3f %9.3f %s" % (
                name, medians[name], statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs),
                ", ".join(notes)))
        print("tollgate proxy+key / nginx proxy_pass: %.2fx (target >= 0.8x)" % (
            medians["tollgate proxy+key"] / medians["nginx proxy_pass"]))
        print("tollgate RSS after the runs: %.1f MiB (peak %.1f MiB)" % (rss, peak))


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main():
    parser = argparse.ArgumentParser(
        prog="scripts/bench.sh",
        description=__doc__,
        epilog="scripts/bench.sh builds tollgate in release first and passes --binary itself.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--binary", required=True, help="the tollgate binary to measure")
    parser.add_argument("--keys", type=positive, nargs="+", default=[1, 10_000, 1_000_000],
                        help="key counts to load, one server each (default: 1 10000 1000000)")
    parser.add_argument("--duration", type=positive, default=5, help="seconds per wrk run (default: 5)")
    parser.add_argument("--runs", type=positive, default=3, help="runs per scenario; the median is reported (default: 3)")
    parser.add_argument("--connections", type=positive, nargs="+", default=[64],
                        help="wrk connection counts, each measured in turn (default: 64)")
    parser.add_argument("--store", choices=["full", "normal", "redis", "redis2"], nargs="+", default=["full"],
                        help="stores to measure (default: full): SQLite synchronous=full or normal; redis (one "
                             "instance on a redis-server the script starts) or redis2 (two instances on it, driven "
                             "together). Put full first to get the Redis figures' ratio to SQLite.")
    parser.add_argument("--event-loops", type=positive, nargs="+",
                        help="serve --event-loops values to measure, one server each (default: serve's own default)")
    parser.add_argument("--baseline", help="another tollgate binary to compare with, interleaved (SQLite full only)")
    parser.add_argument("--binary-arg", action="append", default=[],
                        help="an extra serve argument for --binary only, repeatable; {dir} is its temporary folder "
                             "(e.g. --binary-arg=--access-log --binary-arg={dir}/access.log)")
    parser.add_argument("--scenarios", nargs="+", choices=[s[0] for s in SCENARIOS],
                        help="only these scenarios (with --baseline)")
    parser.add_argument("--proxy", action="store_true",
                        help="measure forwarding instead: nginx proxy_pass (no key check) against Tollgate proxying "
                             "with a key check, to the same nginx upstream, for each --store (full, normal), "
                             "each --connections and each --event-loops")
    args = parser.parse_args()
    args.binary = os.path.abspath(args.binary)
    if args.proxy:
        print("wrk -t1 -c%s -d%ds, %d run(s) per scenario, medians; cores: %d" % (
            "/".join(map(str, args.connections)), args.duration, args.runs, os.cpu_count()))
        for mode in args.store:
            for connections in args.connections:
                for loops in args.event_loops or [None]:
                    bench_proxy(args.binary, mode, args, connections, loops)
        return
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        args.connections = args.connections[0]
        print("wrk -t1 -c%d -d%ds, %d run(s) per scenario and binary, interleaved, medians; cores: %d" % (
            args.connections, args.duration, args.runs, os.cpu_count()))
        for count in args.keys:
            compare(count, args)
        return
    print("wrk -t1 -c%s -d%ds, %d run(s) per scenario, medians; cores: %d" % (
        "/".join(map(str, args.connections)), args.duration, args.runs, os.cpu_count()))
    bench_nginx(args)
    for mode in args.store:
        for count in args.keys:
            for loops in args.event_loops or [None]:
                bench(args.binary, count, mode, args, loops)


if __name__ == "__main__":
    main()
