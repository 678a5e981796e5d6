"""A real Prometheus (Debian's) for tests: on a loopback port, with a scrape configuration
and the repository's alert rules of its own, its data in a temporary directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from services.common.addresses import free_port

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "imsync-alerts.yml"


class Prometheus:
    def __init__(self, directory: Path, targets: dict[str, list[tuple[str, str]]], *, alert_after: str = "0s") -> None:
        """`targets`: job name -> [(HOST:PORT, metrics path)]. The alert rules' `for:` become
        `alert_after`, so that a test sees an alert fire without waiting minutes."""
        self.directory = directory
        self.targets = targets
        self.alert_after = alert_after
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _configure(self) -> Path:
        rules = self.directory / "rules.yml"
        rules.write_text(re.sub(r"(?m)^(\s+for:) \S+$", rf"\1 {self.alert_after}", RULES.read_text()))
        jobs = []
        for job, targets in self.targets.items():
            for index, (address, path) in enumerate(targets):
                jobs.append(
                    f"  - job_name: {job}{'-' + str(index) if index else ''}\n"
                    f"    metrics_path: {path}\n"
                    f"    static_configs:\n      - targets: ['{address}']\n        labels: {{job: {job}}}\n"
                )
        config = self.directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {rules}\nscrape_configs:\n" + "".join(jobs)
        )
        return config

    def start(self, attempts: int = 5) -> Prometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (scripts/bootstrap installs Debian's)")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self._configure()
        self._log = log = open(self.directory / "prometheus.log", "wb")
        for _ in range(attempts):
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready():
                return self
            self.stop()
        self.close()
        raise RuntimeError(f"prometheus did not start; see {self.directory / 'prometheus.log'}")

    def _wait_ready(self, timeout: float = 30.0) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    async def query(self, http: httpx.AsyncClient, expression: str) -> list[dict[str, Any]]:
        answer = (await http.get(f"{self.url}/api/v1/query", params={"query": expression})).json()
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    async def alerts(self, http: httpx.AsyncClient) -> list[dict[str, Any]]:
        answer = (await http.get(f"{self.url}/api/v1/alerts")).json()
        assert answer["status"] == "success", answer
        found: list[dict[str, Any]] = answer["data"]["alerts"]
        return found

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
