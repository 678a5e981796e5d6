"""`imsync account add|import|pause|resume|remove|list|workers` and `imsync session-key
create`: the fleet's accounts, through a master's FleetService (an API key with the admin
scope). `import WORKER.toml` adds the accounts a worker config names ([[accounts]], the
older form) to the fleet, so that the config can keep only its capacity."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

ACTIONS = ("add", "import", "pause", "resume", "remove", "list", "workers")
_LOGINS = {"qr": 1, "phone": 2, "password": 3}


def add_flags(account: argparse.ArgumentParser, flag: Any) -> None:
    flag("--master", "IMSYNC_MASTER", "127.0.0.1:50051", "the master to ask (add, pause, ...)", metavar="HOST:PORT")
    flag("--api-key", "IMSYNC_API_KEY", "", "an API key with the admin scope (none: a master without keys)")
    flag("--tls-ca", "IMSYNC_TLS_CA", "", "speak TLS to the master, trusting this CA (PEM)", metavar="FILE")
    account.add_argument(
        "--adapter", default="douyin", choices=("douyin", "sample"), help="add: the platform's adapter"
    )
    account.add_argument("--display-name", default="", help="add: what people call the account")
    account.add_argument("--base-url", default="", help="add: the platform's address (douyin)")
    account.add_argument(
        "--login", default="qr", choices=tuple(_LOGINS), help="add: how it logs in (password: the simulator's form)"
    )
    account.add_argument("--login-uid", default="", help="add, --login password: the uid")
    flag("--login-password", "IMSYNC_LOGIN_PASSWORD", "", "add, --login password: the password")
    account.add_argument("--labels", default="", help="add: labels a worker must offer, e.g. region=sh,platform=douyin")
    account.add_argument("--seed", type=int, default=0, help="add, --adapter sample: the data's seed")
    account.add_argument("--paused", action="store_true", help="add: added paused (no worker takes it)")


def _labels(text: str) -> dict[str, str]:
    labels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--labels: {part!r} is not name=value")
        labels[name.strip()] = value.strip()
    return labels


def _line(account: Any) -> str:
    state = "paused" if account.paused else (f"on {account.worker_id}" if account.worker_id else "waiting for a worker")
    session = "session kept" if account.has_session else "no session"
    name = f" ({account.display_name})" if account.display_name else ""
    labels = ",".join(f"{k}={v}" for k, v in sorted(account.worker_labels.items()))
    return f"{account.account_id}{name}\t{account.adapter}\t{state}\t{session}" + (f"\t{labels}" if labels else "")


async def _run(args: argparse.Namespace) -> int:
    from google.protobuf.field_mask_pb2 import FieldMask

    from imsync.v1 import fleet_pb2 as fl
    from imsync_client import ImsyncError, connect
    from imsync_client.query import Tls

    tls = Tls(ca=Path(args.tls_ca)) if args.tls_ca else None
    async with connect(args.master, api_key=args.api_key or None, tls=tls, timeout=10.0) as client:
        try:
            if args.action == "add":
                account = fl.ManagedAccount(
                    account_id=args.account_id,
                    adapter=args.adapter,
                    display_name=args.display_name,
                    base_url=args.base_url,
                    login_method=_LOGINS[args.login],  # type: ignore[arg-type]
                    login_uid=args.login_uid,
                    login_password=args.login_password,
                    worker_labels=_labels(args.labels),
                    seed=args.seed,
                    paused=args.paused,
                )
                made = await client.create_managed_account(fl.CreateManagedAccountRequest(account=account))
                print(_line(made.account))
            elif args.action == "import":
                return await _import(client, Path(args.account_id))
            elif args.action in ("pause", "resume"):
                change = fl.ManagedAccount(account_id=args.account_id, paused=args.action == "pause")
                done = await client.update_managed_account(
                    fl.UpdateManagedAccountRequest(
                        account_id=args.account_id, account=change, update_mask=FieldMask(paths=["paused"])
                    )
                )
                print(_line(done.account))
            elif args.action == "remove":
                await client.delete_managed_account(fl.DeleteManagedAccountRequest(account_id=args.account_id))
                print(f"{args.account_id}: removed")
            elif args.action == "list":
                for account in (await client.list_managed_accounts(fl.ListManagedAccountsRequest())).accounts:
                    print(_line(account))
            else:
                for worker in (await client.list_workers(fl.ListWorkersRequest())).workers:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(worker.labels.items())) or "-"
                    crawls = f"{worker.max_concurrent_crawls} crawls at once" if worker.max_concurrent_crawls else "-"
                    where = f" (master {worker.master_id})" if worker.master_id else ""
                    print(
                        f"{worker.worker_id}{where}\t{len(worker.account_ids)}/{worker.capacity}\t{crawls}\t{labels}\t"
                        + " ".join(worker.account_ids)
                    )
        except ImsyncError as error:
            print(f"imsync account {args.action}: {error}", file=sys.stderr)
            return 1
        except ValueError as error:
            print(f"imsync account {args.action}: {error}", file=sys.stderr)
            return 2
    return 0


async def _import(client: Any, path: Path) -> int:
    """Each account of a worker config, as a managed account; those the fleet has already are
    left as they are."""
    import grpc

    from imsync.v1 import fleet_pb2 as fl
    from imsync_client import ImsyncError
    from services.worker.config import ConfigError, load_worker_config

    try:
        config = load_worker_config(path, with_token=False)
    except ConfigError as error:
        print(f"imsync account import: {path}: {error}", file=sys.stderr)
        return 2
    if not config.accounts:
        print(f"imsync account import: {path} names no [[accounts]]", file=sys.stderr)
        return 2
    failed = 0
    for named in config.accounts:
        options = named.options
        password = bool(options.get("login_uid") and options.get("login_password"))
        account = fl.ManagedAccount(
            account_id=named.account_id,
            adapter=named.adapter,
            base_url=str(options.get("base_url", "")),
            login_method=fl.LOGIN_METHOD_PASSWORD if password else fl.LOGIN_METHOD_QR_CODE,
            login_uid=str(options.get("login_uid", "")) if password else "",
            login_password=str(options.get("login_password", "")) if password else "",
            seed=int(options.get("seed", 0)) if named.adapter == "sample" else 0,
        )
        try:
            made = await client.create_managed_account(fl.CreateManagedAccountRequest(account=account))
            print(_line(made.account))
        except ImsyncError as error:
            if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                print(f"{named.account_id}\talready in the fleet: left as it is")
                continue
            print(f"{named.account_id}\tnot imported: {error.message}", file=sys.stderr)
            failed += 1
            continue
        # A scheduled worker keeps an account's session at <state_dir>/<account id>.json.
        kept = options.get("storage_state")
        wanted = (config.state_dir or path.parent / "state") / f"{named.account_id}.json"
        if kept and Path(str(kept)) != wanted and await asyncio.to_thread(Path(str(kept)).exists):
            print(f"{named.account_id}\tmove its session {kept} to {wanted}, or it logs in again")
    print(
        f"next: replace the [[accounts]] tables of {path} with capacity = {len(config.accounts)} (or more) and "
        "restart the worker: the master assigns it these accounts, and it resumes with the sessions it kept"
    )
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    if args.action not in ("list", "workers") and not args.account_id:
        wanted = "WORKER_CONFIG (a worker's TOML file)" if args.action == "import" else "ACCOUNT_ID"
        print(f"imsync account {args.action}: {wanted} is required", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))


def session_key(args: argparse.Namespace) -> int:
    from services.master.auth.session_keys import SessionKeyError, create_session_key

    try:
        key_id = create_session_key(Path(args.file), args.key_id)
    except SessionKeyError as error:
        print(f"imsync session-key: {error}", file=sys.stderr)
        return 2
    print(f"key {key_id} is first in {args.file} ({oct(os.stat(args.file).st_mode & 0o777)}); restart the masters")
    return 0
