"""The worker's configuration file: where its command log goes, and what a file it cannot read says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.worker.config import ConfigError, load_worker_config

from .helpers.cli import imsync

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


def test_a_config_that_cannot_be_read_is_named_once_with_why(tmp_path: Path) -> None:
    """The worker's one line names the file once (it said the path three times)."""
    missing = tmp_path / "nowhere.toml"
    done = imsync("worker", "--config", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip() == f"imsync worker: {missing}: No such file or directory", done.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("master = \n")
    done = imsync("worker", "--config", str(broken))
    assert done.returncode == 2 and done.stderr.count(str(broken)) == 1, done.stderr
    assert "not TOML" in done.stderr and "Traceback" not in done.stderr
