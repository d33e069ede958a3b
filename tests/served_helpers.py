"""Starting real OpenAI-compatible servers on 127.0.0.1 for the served-model tests, and running
one task's prompts through several models to compare their rows."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(
    command: Sequence[str], port: int, log: Path, env: dict[str, str], start_s: float
) -> Iterator[str]:
    """Run ``command`` (a server listening on ``port``, its output in ``log``) until it answers
    ``/v1/models``; yield its /v1 URL; stop it, and whatever it started, afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + start_s
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-15:]
                pytest.fail(f"{command[2]} did not start:\n" + "\n".join(tail))
            time.sleep(0.5)
        yield url
    finally:
        # The server's own workers too (vLLM runs its engine in a child process).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def prompt_rows(
    task: str,
    models: Sequence[Any],
    db: Path,
    shots: Sequence[int] | None,
    executor: Any = None,
    **options: Any,
) -> dict[str, tuple[list[Any], float]]:
    """One prompt run of ``task`` (``shots``, its first template) for each of ``models`` (model
    specs), on the same prompts, with ``executor`` (default: local): each model's stored rows
    and seconds, by model name."""
    from bench.engine import Engine
    from bench.engine.executors import LocalExecutor
    from bench.prompt_runner import PromptRunner
    from bench.specs import PromptConfig
    from bench.store import ResultStore
    from bench.tasks import get_task, load_task_data

    item = get_task(task)
    data = load_task_data(item.spec, item.base_dir)
    out: dict[str, tuple[list[Any], float]] = {}
    with ResultStore(db) as store:
        engine = Engine(store, progress=False, executor=executor or LocalExecutor())
        runner = PromptRunner(store, PromptConfig(device="cpu", **options), progress=False,
                              engine=engine)  # fmt: skip
        (planned,) = runner.plan(data, shots, [0])
        for spec in models:
            started = time.perf_counter()
            record = runner.run_one(spec, planned).record
            seconds = time.perf_counter() - started
            assert record.status == "complete" and record.backend == spec.backend
            assert record.model_hash
            out[spec.name] = (store.prompt_rows(record.run_key), seconds)
    return out
