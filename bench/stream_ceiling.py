"""The ceiling of the keys every master shares on a Redis Cluster, against what the cluster
takes spread over its slots, in the same run.

    .venv/bin/python -m bench.stream_ceiling [--requests 200000] [--json PATH]

On a Redis Cluster an account lives in one slot and its changes spread over the
primaries; two things do not spread: the event stream (`<p>:events`, every event of every
account is added to it) and the account index (`<p>:accounts`, a sorted set: one ZADD
when an account is first seen, read by listings). Each lives on one primary and is served
by that primary's one thread. This measures, with `redis-benchmark` against a local
six-node cluster (three primaries, each with a replica, on this machine):

- **spread**: HSET of random keys on all three primaries (`--cluster`, which spreads `{tag}`): what the
  cluster takes when the load spreads, the baseline;
- **one key, XADD**: a plain XADD to one stream, the most one primary takes for one key;
- **events (FLUSH_ADD)**: the script that adds an event to the stream on a cluster,
  digest check included (layout.py), one event a call: the event stream's ceiling;
- **account index (ZADD NX)**: the account index's ceiling for first sightings.

Each is requests per second with 50 connections and 16 commands in flight on each; the
ratios are against the spread load. A master's own work per event (a delta's commit,
reads and Ack) costs far more than the stream's share: the masters benchmark on one
machine reaches about 1,000 deltas a second, each one event.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from services.common.local_redis import RedisCluster
from services.master.redis.layout import FLUSH_ADD

EVENT = "x" * 180  # about the size of a message's arrival event


def _rate(binary: str, port: int, requests: int, *command: str, cluster: bool = False) -> float:
    args = [binary, "-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "-c", "50", "-P", "16", "-r", "1000000"]
    args += ["-q", *(["--cluster"] if cluster else []), *command]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True)
    found = re.findall(r"([\d.]+) requests per second", done.stdout)
    if not found:
        raise RuntimeError(f"redis-benchmark printed no rate: {done.stdout[-500:]} {done.stderr[-500:]}")
    return float(found[-1])


def run(requests: int) -> dict[str, float]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise SystemExit("redis-benchmark is not installed (Debian's redis-tools)")
    with tempfile.TemporaryDirectory() as folder:
        cluster = RedisCluster(Path(folder)).start()
        try:
            stream, index = "bench:events", "bench:accounts"
            port, index_port = cluster.primary_for(stream).port, cluster.primary_for(index).port
            digests = f"bench:flushed{{{stream}}}"
            return {
                "spread": _rate(binary, port, requests, "HSET", "k:{tag}:__rand_int__", "f", EVENT, cluster=True),
                "xadd": _rate(binary, port, requests, "XADD", stream, "MAXLEN", "~", "100000", "*", "e", EVENT),
                "flush_add": _rate(
                    binary,
                    port,
                    requests,
                    "EVAL",
                    FLUSH_ADD,
                    "3",
                    stream,
                    digests,
                    digests + ":n",
                    "100000",
                    EVENT + "__rand_int__",
                ),
                "account_index": _rate(binary, index_port, requests, "ZADD", index, "NX", "0", "a__rand_int__"),
            }
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000, help="requests per measurement (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = run(args.requests)
    base = results["spread"]
    labels = {
        "spread": "spread over the slots (HSET)",
        "xadd": "one key, XADD",
        "flush_add": "events (FLUSH_ADD)",
        "account_index": "account index (ZADD NX)",
    }
    print(f"{'load':<32} {'requests/s':>11} {'ratio':>6}")
    for key, rate in results.items():
        print(f"{labels[key]:<32} {rate:>11,.0f} {rate / base:>6.2f}")
    print("ratios against the spread load in this run; redis-benchmark, 50 connections, 16 in flight each,")
    print("a local cluster of three primaries with a replica each")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
