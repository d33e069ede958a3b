"""Language models behind an OpenAI-compatible server: llama-cpp-python's server on 127.0.0.1
serving the pinned SmolLM2 GGUF asset, and a loopback proxy that injects 429/500 answers or
strips logprobs. Needs the ``serve`` extra (llama-cpp-python, built from source)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_user_error

# llama.cpp's OpenMP threads spin while they wait for work; on two shared cores that made a
# 16-token answer take 8 s instead of 0.25 s. Set before llama_cpp loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
pytest.importorskip("llama_cpp")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the SmolLM2 asset."""
    from bench import assets
    from bench.models.gguf import DEFAULT_ASSET, DEFAULT_GGUF

    assets.fetch([DEFAULT_ASSET], progress=False)
    gguf = assets.asset_dir(DEFAULT_ASSET) / DEFAULT_GGUF
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--logits_all", "true", "--n_threads", "1",
         "--model_alias", "smollm2-q4"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the llama-cpp-python server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


class _Proxy(http.server.ThreadingHTTPServer):
    """Forwards to the server, answering the first ``fail`` completion requests with ``status``
    instead and, with ``strip``, removing logprobs from completions."""

    def __init__(self, target: str, fail: int = 0, status: int = 429, strip: bool = False):
        self.target = target
        self.fail = fail
        self.status = status
        self.strip = strip
        self.seen = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Proxy

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self, method: str) -> None:
        # Only completions fail: they are what a run's retries are counted on.
        with self.server.lock:
            if method == "POST":
                self.server.seen += 1
            failing = method == "POST" and self.server.seen <= self.server.fail
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        if failing:
            self.send_response(self.server.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.path.removeprefix("/v1")
        request = urllib.request.Request(
            self.server.target + path, data=body, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = response.read()
        if self.server.strip and path.startswith("/completions"):
            answer = json.loads(payload)
            for choice in answer.get("choices", []):
                choice["logprobs"] = None
            payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")


def _proxy(target: str, **options: Any) -> _Proxy:
    proxy = _Proxy(target, **options)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


def _arithmetic() -> Any:
    from bench.tasks import get_task, load_task_data

    item = get_task("arithmetic")
    return load_task_data(item.spec, item.base_dir)


def test_generation_through_the_server_agrees_with_the_in_process_model(
    server: str, tmp_path: Path
) -> None:
    from llama_cpp import Llama

    from bench import assets
    from bench.models.gguf import DEFAULT_ASSET, DEFAULT_GGUF, default_causal_lm
    from bench.prompt_runner import PromptRunner
    from bench.prompts import extract_answer
    from bench.specs import ModelSpec, PromptConfig
    from bench.store import ResultStore

    data = _arithmetic()
    # Through the model's chat template: the server's for the served model, transformers' (from
    # the same GGUF file) in process.
    config = PromptConfig(limit=100, device="cpu")
    started = time.perf_counter()
    with ResultStore(tmp_path / "r.sqlite") as store:
        runner = PromptRunner(store, config, progress=False)
        (planned,) = runner.plan(data, [0], [0])
        served = runner.run_one(ModelSpec(name="q4", path=server, backend="served"), planned)
        served_s = time.perf_counter() - started
        local = runner.run_one(ModelSpec(name="fp32", path=str(default_causal_lm())), planned)
        served_rows = store.prompt_rows(served.record.run_key)
        local_rows = store.prompt_rows(local.record.run_key)
    assert len(served_rows) == len(local_rows) == 100
    pairs = list(zip(served_rows, local_rows, strict=True))
    agree = sum(a.answer == b.answer for a, b in pairs) / len(pairs)
    # The same GGUF through llama.cpp's Python API in this process: the same kernels as the
    # server, so every answer must match; what differs from transformers is the arithmetic of
    # the quantised kernels, not the serving.
    spec = data.spec.prompt
    assert spec is not None
    llama = Llama(
        model_path=str(assets.asset_dir(DEFAULT_ASSET) / DEFAULT_GGUF),
        n_ctx=2048, n_threads=1, verbose=False,
    )  # fmt: skip
    same = 0
    for row in served_rows:
        reply = llama.create_chat_completion(
            messages=json.loads(row.prompt), temperature=0.0,
            max_tokens=spec.max_new_tokens, stop=list(spec.stop),
        )  # fmt: skip
        text = reply["choices"][0]["message"]["content"] or ""  # type: ignore[index]
        same += extract_answer(text, spec.answer_pattern, spec.answer_match) == row.answer
    print(
        f"\narithmetic, 100 questions (served in {served_s:.0f} s): answers agreeing with "
        f"llama.cpp in process {same}/100, with transformers on the dequantised weights "
        f"{agree:.2f}"
    )
    assert same >= 95
    assert served.record.backend == "served" and served.record.model_hash


def test_wrong_echoed_logprobs_are_refused_in_one_line(server: str, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--task", "strategyqa", "--model",
         f"q4=served:{server}", "--limit", "5", "--db", str(db), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert_user_error(proc, "echoes wrong prompt logprobs", "generated", "echoed")


def test_429_and_500_are_retried_and_recorded(server: str, tmp_path: Path) -> None:
    from bench.prompt_runner import PromptRunner
    from bench.specs import ModelSpec, PromptConfig
    from bench.store import ResultStore

    data = _arithmetic()
    for status in (429, 500):
        proxy = _proxy(server, fail=3, status=status)
        try:
            with ResultStore(tmp_path / f"r{status}.sqlite") as store:
                runner = PromptRunner(store, PromptConfig(limit=8), progress=False)
                (planned,) = runner.plan(data, [0], [0])
                outcome = runner.run_one(ModelSpec(name="q4", path=proxy.url, backend="served"),
                                         planned)  # fmt: skip
                record = store.get_run(outcome.record.run_key)
        finally:
            proxy.shutdown()
        assert record is not None and record.status == "complete" and record.n_examples == 8
        retries = record.config.execution["served_retries"]
        assert retries.get(str(status), 0) >= 1, retries


def _run(task: str, model: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "run", "--task", task, "--limit", "3", "--db", str(db),
         "--no-progress", "--model", model],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_served_model_bad_input(server: str, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    started = time.monotonic()
    dead = _run("arithmetic", f"served:http://127.0.0.1:{_free_port()}/v1", db)
    assert_user_error(dead, "does not answer")
    assert time.monotonic() - started < 30
    proxy = _proxy(server, strip=True)
    try:
        stripped = _run("strategyqa", f"served:{proxy.url}", db)
    finally:
        proxy.shutdown()
    assert_user_error(stripped, "returns no logprobs")
    assert_user_error(_run("arithmetic", f"served:{server}#no-such-model", db), "does not serve")
