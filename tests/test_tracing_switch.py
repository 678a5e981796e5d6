"""Whether spans are made (observability.tracing_on), asked on every request: off with no
tracer provider, on once one is set in code or named in the environment. Each case in a
process of its own: OpenTelemetry's provider is set once a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]

_CHECK = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from services.common.observability import trace_metadata, tracing_on
print(tracing_on(), trace_metadata() == [])
if not tracing_on():
    trace.set_tracer_provider(TracerProvider())
    print(tracing_on())
"""


def _run(environment: dict[str, str]) -> list[str]:
    env = {name: value for name, value in os.environ.items() if name != "OTEL_PYTHON_TRACER_PROVIDER"}
    env.update(environment)
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, env=env, cwd=_ROOT, check=True
    )
    return done.stdout.split()


def test_tracing_is_off_without_a_provider_and_on_once_one_is_set() -> None:
    assert _run({}) == ["False", "True", "True"]


def test_a_provider_named_in_the_environment_turns_tracing_on() -> None:
    # The SDK's entry point for its TracerProvider.
    assert _run({"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"})[0] == "True"
