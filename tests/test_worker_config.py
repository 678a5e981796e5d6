"""The worker's configuration file: where its command log goes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.worker.config import ConfigError, load_worker_config

_BASE = 'master = "127.0.0.1:1"\nworker_id = "w"\ntoken = "t"\n'
_ACCOUNT = '\n[[accounts]]\naccount_id = "a"\nadapter = "sample"\n'


def _load(tmp_path: Path, extra: str = "") -> Path | None:
    path = tmp_path / "conf" / "worker.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(_BASE + extra + _ACCOUNT)
    return load_worker_config(path).command_log


def test_the_command_log_lies_beside_the_configuration_unless_named(tmp_path: Path) -> None:
    assert _load(tmp_path) == tmp_path / "conf" / "commands.sqlite3"
    assert _load(tmp_path, 'command_log = "state/replies.sqlite3"\n') == tmp_path / "conf" / "state" / "replies.sqlite3"


@pytest.mark.parametrize("value", ['""', "3"])
def test_a_command_log_that_is_no_file_name_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="command_log"):
        _load(tmp_path, f"command_log = {value}\n")


def test_a_worker_whose_command_log_cannot_be_opened_says_so_and_stops(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "blocked").write_text("a file where the log's folder should be")
    config = tmp_path / "conf" / "worker.toml"
    config.write_text(_BASE + 'command_log = "blocked/commands.sqlite3"\n' + _ACCOUNT)
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "worker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "command log" in done.stderr and "blocked" in done.stderr and "Traceback" not in done.stderr
