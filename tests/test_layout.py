"""The master's rooms and which way their imports go (docs/architecture.md draws them).

    server.py, admin.py, health.py, in_process.py   the process: builds and wires the rest
    api/     the IM servicers and the cache servicer
    sync/    the SyncData servicer, its hub and sessions, the fleet's scheduler and servicer
    rpc/     what the servicers share of gRPC: status mapping, error boundary, interceptor
    auth/    API keys and worker tokens
    memory/  the memory backend (store, journal, checkpoints)
    redis/   the Redis backend (store, events, commands, leases)
    model/   entities and their state, the Store interface, errors, no I/O of its own

A room imports only from the rooms below it in this table; the servicers (api/, sync/)
never from a backend; the backends and the model never gRPC.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MASTER = ROOT / "services" / "master"

# What each room may import of the master (besides itself).
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "auth": {"model"},
    "memory": {"model"},
    "redis": {"model"},
    "rpc": {"model", "auth"},
    "sync": {"model", "auth", "rpc"},
    "api": {"model", "auth", "rpc"},
}
BACKENDS = ("model", "memory", "redis")


def _imports(path: Path) -> set[str]:
    """The absolute names of the modules `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _room_modules(room: str) -> list[Path]:
    return sorted((MASTER / room).glob("*.py"))


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_the_rooms_below_it(room: str) -> None:
    wrong = []
    for path in _room_modules(room):
        for name in _imports(path):
            parts = name.split(".")
            if parts[:2] != ["services", "master"] or len(parts) < 3:
                continue
            other = parts[2]
            if other != room and other not in ALLOWED.get(room, set()) and other in ALLOWED:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            elif other not in ALLOWED and other != room:
                wrong.append(f"{path.relative_to(ROOT)} imports {name} (a module of the process, above every room)")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("room", ["api", "sync", "rpc"])
def test_the_servicers_know_no_backend(room: str) -> None:
    for path in _room_modules(room):
        for name in _imports(path):
            assert not name.startswith(("services.master.memory", "services.master.redis", "redis")), (
                f"{path.relative_to(ROOT)} imports {name}"
            )


def test_the_backends_and_the_model_know_no_grpc() -> None:
    """Every module of model/, memory/ and redis/ imported in a fresh interpreter where
    gRPC cannot be imported at all: what they import, however indirectly, is gRPC-free."""
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for room in BACKENDS
        for path in _room_modules(room)
        if path.name != "__init__.py"
    ]
    assert len(modules) > 20
    program = (
        "import sys\n"
        "for name in ('grpc', 'grpc_status', 'grpc_health', 'grpc_reflection'):\n"
        "    sys.modules[name] = None\n"
        f"import importlib\nfor module in {modules!r}:\n    importlib.import_module(module)\n"
    )
    run = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]


def test_no_module_of_services_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): count
        for path in (ROOT / "services").rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 500
    }
    assert not long, long
