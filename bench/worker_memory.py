"""The worker's memory per account at 1, 5 and 20 accounts, against one Chromium per account
(how the worker ran before: a persistent browser profile each), measured in the same run.

For each size the simulator serves that many accounts; the worker (one Chromium, a context
per account) logs each in and crawls it, and keeps its chat page open (the live watch).
Once every account has synced and the pages have settled, the memory of the worker's
whole process tree (Python, Playwright's driver, Chromium and its renderers) is read:
PSS (each shared page counted once, split among the processes sharing it) and RSS summed.
The baseline is a process of this module that launches one Chromium per account, each
logged in and holding the same chat page open, read the same way.

    python -m bench.worker_memory [--sizes 1,5,20] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from services import processes
from services.master.auth.worker_tokens import add_worker_token
from services.sim.server import uids_of, worker_accounts


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def memory_of(root: int) -> tuple[float, float, int]:
    """(PSS MiB, RSS MiB, processes) of a process and everything under it."""
    pss = rss = 0
    count = 0
    for pid in _tree(root):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name == "Pss":
                pss += int(value.split()[0])
            elif name == "Rss":
                rss += int(value.split()[0])
    return pss / 1024, rss / 1024, count


async def _settled(root: int, seconds: float = 20.0) -> tuple[float, float, int]:
    """The tree's memory once it stops growing: the largest of samples a second apart."""
    samples = []
    for _ in range(int(seconds)):
        samples.append(memory_of(root))
        await asyncio.sleep(1)
    return max(samples)


async def measure_worker(size: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="imsync-memory-", ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        token = add_worker_token(folder / "tokens.toml", "bench-worker", ["*"])
        children: list[processes.Child] = []
        try:
            sim = await processes.start(["sim", "--listen", "127.0.0.1:0", "--accounts", str(size), "--rate", "0"])
            children.append(sim)
            master = await processes.start(
                ["master", "--listen", "127.0.0.1:0", "--worker-tokens", str(folder / "tokens.toml")]
            )
            children.append(master)
            gateway_process = await processes.start(["gateway", "--listen", "127.0.0.1:0", "--master", master.address])
            children.append(gateway_process)
            gateway = gateway_process.address
            ids = [f"shop-{i}" for i in range(size)]
            config = folder / "worker.toml"
            config.write_text(
                f'master = "{master.address}"\nworker_id = "bench-worker"\ntoken = "{token}"\ncrawl_interval = 15\n'
                + worker_accounts(sim.address, ids, uids_of(sim.ready_line))
            )
            worker = await processes.start(["worker", "--config", str(config)])
            children.append(worker)
            async with httpx.AsyncClient(base_url=f"http://{gateway}", timeout=30) as http:
                async with asyncio.timeout(600):
                    while True:
                        users = (await http.get("/api/im/accounts", params={"count": "100"})).json()["data"]["users"]
                        if len(users) == size and all(u["crawl_state"] == "whole" for u in users):
                            break
                        await asyncio.sleep(1)
            return await _settled(worker.process.pid)
        finally:
            for child in reversed(children):
                await child.stop(timeout=30)


async def measure_baseline(size: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="imsync-memory-", ignore_cleanup_errors=True) as tmp:
        sim = await processes.start(["sim", "--listen", "127.0.0.1:0", "--accounts", str(size), "--rate", "0"])
        try:
            uids = ",".join(uids_of(sim.ready_line))
            baseline = await processes.start(
                ["baseline", sim.address, uids, tmp], module="bench.worker_memory", timeout=600
            )
            try:
                return await _settled(baseline.process.pid)
            finally:
                await baseline.stop(timeout=30)
        finally:
            await sim.stop()


async def one_chromium_per_account(sim: str, uids: list[str], folder: Path) -> None:
    """The baseline's process: a persistent Chromium per account, logged in, on the chat page."""
    from playwright.async_api import async_playwright

    from services.worker.browser import launch_options

    async with async_playwright() as playwright:
        for index, uid in enumerate(uids):
            context = await playwright.chromium.launch_persistent_context(
                str(folder / f"profile-{index}"), **launch_options()
            )
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(f"http://{sim}/login")
            await page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
            await page.select_option("select[name=uid]", uid)
            await page.fill("input[name=password]", "sim")
            await page.click("form[action='/login'] button[type=submit]")
            await page.wait_for_selector("li.work")
            await page.goto(f"http://{sim}/creator-micro/data/following/chat")
            await page.wait_for_load_state("networkidle")
        print("imsync baseline started", flush=True)
        await asyncio.Event().wait()


async def bench(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        pss, rss, count = await measure_worker(size)
        base_pss, base_rss, base_count = await measure_baseline(size)
        rows.append(
            {
                "accounts": size,
                "worker_pss_mib": round(pss, 1),
                "worker_rss_mib": round(rss, 1),
                "worker_processes": count,
                "baseline_pss_mib": round(base_pss, 1),
                "baseline_rss_mib": round(base_rss, 1),
                "baseline_processes": base_count,
                "pss_per_account_mib": round(pss / size, 1),
                "baseline_pss_per_account_mib": round(base_pss / size, 1),
                "ratio": round(pss / base_pss, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "baseline":
        asyncio.run(one_chromium_per_account(sys.argv[2], sys.argv[3].split(","), Path(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,5,20")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = asyncio.run(bench([int(size) for size in args.sizes.split(",")]))
    print(
        "\n| accounts | worker PSS | per account | one Chromium per account: PSS | per account | ratio | worker RSS (summed) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['accounts']} | {row['worker_pss_mib']:.0f} MiB | {row['pss_per_account_mib']:.0f} MiB | "
            f"{row['baseline_pss_mib']:.0f} MiB | {row['baseline_pss_per_account_mib']:.0f} MiB | {row['ratio']:.2f} | "
            f"{row['worker_rss_mib']:.0f} MiB |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
