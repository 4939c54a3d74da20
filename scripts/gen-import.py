#!/usr/bin/env python3
"""Write a `tollgate keys import` file of N lines, to measure an import of many keys.

    scripts/gen-import.py 1000000 > /tmp/keys.ndjson
    /usr/bin/time -v .build/release/tollgate keys import /tmp/keys.ndjson --store sqlite:/tmp/x.sqlite

The lines mix what real files hold: three in four give the secret ("key"), one in four its
SHA-256 ("digest"); every other line has its own "id"; all have a name, scopes and limits,
and one in eight an expiry. The output is the same for the same --seed, so that runs can be
compared. --bad-line N replaces line N with one that is not a key object (to check that
nothing is stored).
"""
import argparse
import hashlib
import random
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", type=int, help="how many lines")
    parser.add_argument("--seed", type=int, default=1, help="the same seed writes the same file (default 1)")
    parser.add_argument("--bad-line", type=int, default=0, help="line number (from 1) to replace with a bad line")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = sys.stdout
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    buffer = []
    for n in range(1, args.count + 1):
        if n == args.bad_line:
            buffer.append('{"key": "bad-%d", "scopes": "api1"}\n' % n)
            continue
        secret = "imp-%d-%s" % (n, "".join(rng.choice(alphabet) for _ in range(24)))
        fields = []
        if n % 2 == 0:
            fields.append('"id": "cust-%d"' % n)
        if n % 4 == 0:
            fields.append('"digest": "%s"' % hashlib.sha256(secret.encode()).hexdigest())
        else:
            fields.append('"key": "%s"' % secret)
        fields.append('"name": "customer %d"' % n)
        fields.append('"scopes": ["api1", "api2*"]')
        fields.append('"limits": ["%d/day", "10/second"]' % (1000 + n % 9000))
        if n % 8 == 0:
            fields.append('"expires_at": "2099-01-01T00:00:00Z"')
        buffer.append("{" + ", ".join(fields) + "}\n")
        if len(buffer) >= 10000:
            out.write("".join(buffer))
            buffer.clear()
    out.write("".join(buffer))


if __name__ == "__main__":
    main()
