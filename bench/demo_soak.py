"""The demo, run as a person runs it, for minutes: are the crawls whole and quick, and does the
API end up holding exactly what the platform holds?

Starts `imsync demo` with its default settings (three accounts whose customers act twelve
times a minute, a crawl every 5 s), follows its event stream the whole time, and reads the
worker's one line per crawl. At the end it stops the customers (`/__sim/pause`), waits for
the crawls to catch up, and compares every list of the API with the simulator's truth,
deletions included. It prints the share of whole crawls, the crawl duration's p50 and p95
against the crawl interval (a ratio: under 1 means crawls keep up), the live arrivals (the
customers' messages and the account's own, as the worker counts them) against the
messages announced (new_message and own_message events), and whether any was announced
twice. The event stream is followed as the console follows it: resumed after the last
event it had when it ends (a master restarted), from then on when that is refused.

With --kill, the worker is SIGKILLed a third of the way through and the master two thirds
(the demo starts each again; the master from its journal): nothing acknowledged may be
lost, and the same figures hold.

    python -m bench.demo_soak [--minutes 10] [--kill] [--json PATH] [--log PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from services import processes

_CRAWL = re.compile(r"^(\S+): crawl (whole|PARTIAL: (.*)); (\d+) entities in ([\d.]+) s")
_FAILED = re.compile(r"^(\S+): crawl failed(?: \(\d+ in a row\))?: (.*)")
_LIVE = re.compile(r"^(\S+): (\d+) message\(s\) arrived live")
_URL = re.compile(r"The console: (http://\S+?)/\s*$")
_SIM = re.compile(r"The simulated platform is at (http://[^/\s]+)/login")


async def _lines(stream: asyncio.StreamReader, sink: list[str], ready: asyncio.Event) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        sink.append(text)
        if "Ctrl-C stops everything" in text:
            ready.set()


async def _all(http: httpx.AsyncClient, path: str, key: str, **params: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        data = (await http.get(path, params=params | {"cursor": cursor, "count": "100"})).json()["data"]
        out += data[key]
        if not data["has_more"]:
            return out
        cursor = data["cursor"]


async def _differences(http: httpx.AsyncClient, platform: httpx.AsyncClient, account_id: str, uid: str) -> list[str]:
    truth = (await platform.get("/__sim/truth", params={"uid": uid})).json()
    held = {
        "works": (
            {w["content_id"] for w in await _all(http, "/api/im/contents", "contents", account_id=account_id)},
            {w["aweme_id"] for w in truth["works"]},
        ),
        "comments": (
            {c["comment_id"] for c in await _all(http, "/api/im/discussions", "discussions", account_id=account_id)},
            {c["cid"] for c in truth["comments"]},
        ),
        "conversations": (
            {
                c["conversation_id"]
                for c in await _all(http, "/api/im/conversations", "conversations", account_id=account_id)
            },
            {c["conversation_id"] for c in truth["conversations"]},
        ),
        "messages": (
            {m["message_id"] for m in await _all(http, "/api/im/messages", "messages", account_id=account_id)},
            {m["server_id"] for m in truth["messages"]},
        ),
        "notifications": (
            {
                i["id"][len("notification:") :]
                for i in await _all(
                    http, "/api/im/unified-messages", "messages", account_id=account_id, types="notification"
                )
            },
            {n["nid"] for n in truth["notices"]},
        ),
    }
    return [
        f"{account_id} {name}: {len(api - platform_ids)} extra, {len(platform_ids - api)} missing"
        for name, (api, platform_ids) in held.items()
        if api != platform_ids
    ]


async def soak(minutes: float, log: Path | None = None, kill_midway: bool = False) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *processes.demo_command(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    lines: list[str] = []
    ready = asyncio.Event()
    reader = asyncio.create_task(_lines(process.stdout, lines, ready))
    events: Counter[str] = Counter()
    killed: list[str] = []
    try:
        async with asyncio.timeout(300):
            await ready.wait()
        base = next(m.group(1) for line in lines if (m := _URL.search(line)))
        sim = next(m.group(1) for line in lines if (m := _SIM.search(line)))
        started = len(lines)

        async def follow() -> None:
            last = ""
            async with httpx.AsyncClient(base_url=base, timeout=None) as http:
                while True:
                    # A message caught live is a customer's (new_message) or the account's own
                    # (own_message: a new conversation's history holds the shop's replies too).
                    headers = {"Accept": "text/event-stream"} | ({"Last-Event-ID": last} if last else {})
                    try:
                        async with http.stream(
                            "GET", "/api/im/events", params={"types": "new_message,own_message"}, headers=headers
                        ) as stream:
                            if stream.status_code != 200:
                                last = ""  # what followed `last` is gone (the master restarted)
                            async for line in stream.aiter_lines():
                                if line.startswith("id: "):
                                    last = line[4:]
                                elif line.startswith("data: ") and "event" in (payload := json.loads(line[6:])):
                                    events[payload["event"]["message"]["message_id"]] += 1
                    except httpx.HTTPError:
                        pass  # the gateway restarting: again
                    await asyncio.sleep(0.5)

        async def kill(command: str, at: float) -> None:
            await asyncio.sleep(at)
            pid = processes.child_of(process.pid, command)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(f"{command} at {at:.0f} s")
                print(f"killed the {command} (SIGKILL) {at:.0f} s in", flush=True)

        midway = (("worker", 1 / 3), ("master", 2 / 3)) if kill_midway else ()
        killers = [asyncio.create_task(kill(command, minutes * 60 * share)) for command, share in midway]
        follower = asyncio.create_task(follow())
        print(f"soaking for {minutes:g} minutes: {base}/ (platform {sim})", flush=True)
        await asyncio.sleep(minutes * 60)
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as http,
            httpx.AsyncClient(base_url=sim, timeout=30) as platform,
        ):
            await platform.post("/__sim/pause", json={"paused": True})
            accounts = {
                u["account_id"]: u["user_id"] for u in (await http.get("/api/im/accounts")).json()["data"]["users"]
            }
            paused = time.monotonic()
            differences: list[str] = []
            while time.monotonic() - paused < 120:
                differences = [
                    d
                    for account_id, uid in accounts.items()
                    for d in await _differences(http, platform, account_id, uid)
                ]
                if not differences:
                    break
                await asyncio.sleep(1)
            converged = time.monotonic() - paused
        for task in (follower, *killers):
            task.cancel()
        await asyncio.gather(follower, *killers, return_exceptions=True)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        reader.cancel()
    crawls = [m for line in lines[started:] if (m := _CRAWL.match(line))]
    failed = [m for line in lines[started:] if (m := _FAILED.match(line))]
    durations = sorted(float(m.group(5)) for m in crawls)
    whole = sum(m.group(2) == "whole" for m in crawls)
    interval = 5.0
    p95 = durations[int(0.95 * (len(durations) - 1))] if durations else float("nan")
    result = {
        "minutes": minutes,
        "killed": killed,
        "crawls": len(crawls) + len(failed),
        "whole": whole,
        "partial": len(crawls) - whole,
        "failed": len(failed),
        "whole_share": whole / max(1, len(crawls) + len(failed)),
        "duration_p50_s": statistics.median(durations) if durations else float("nan"),
        "duration_p95_s": p95,
        "crawl_interval_s": interval,
        "p95_over_interval": p95 / interval,
        "live_arrivals": sum(int(m.group(2)) for line in lines[started:] if (m := _LIVE.match(line))),
        "messages_announced": len(events),
        "announced_twice": sum(1 for n in events.values() if n > 1),
        "api_equals_platform": not differences,
        "seconds_to_converge_after_pause": round(converged, 1),
        "differences": differences,
        "partial_reasons": Counter(m.group(3) for m in crawls if m.group(3)).most_common(5),
        "failure_reasons": Counter(m.group(2) for m in failed).most_common(5),
    }
    if log is not None:
        await asyncio.to_thread(log.write_text, "\n".join(lines) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--log", type=Path, help="write the demo's whole output here")
    parser.add_argument("--kill", action="store_true", help="SIGKILL the worker, then the master, midway")
    args = parser.parse_args()
    result = asyncio.run(soak(args.minutes, args.log, args.kill))
    print(
        f"\n{result['crawls']} crawls in {args.minutes:g} min: {result['whole_share']:.1%} whole "
        f"({result['partial']} partial, {result['failed']} failed)\n"
        f"crawl duration p50 {result['duration_p50_s']:.2f} s, p95 {result['duration_p95_s']:.2f} s; "
        f"p95 / crawl interval ({result['crawl_interval_s']:g} s) = {result['p95_over_interval']:.2f}\n"
        f"{result['live_arrivals']} messages arrived live; {result['messages_announced']} announced, "
        f"{result['announced_twice']} of them twice\n"
        + (f"killed midway: {', '.join(result['killed'])}\n" if result["killed"] else "")
        + f"API equals the platform's truth: {result['api_equals_platform']} "
        f"({result['seconds_to_converge_after_pause']} s after the customers stopped)"
    )
    for line in result["differences"]:
        print("  ", line)
    for reason, count in result["partial_reasons"]:
        print(f"   partial x{count}: {reason}")
    for reason, count in result["failure_reasons"]:
        print(f"   failed x{count}: {reason}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
