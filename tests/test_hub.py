"""An unreachable hub: a hub id that is not cached fails at once, in one line, not after retries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import assert_user_error

from bench import hub
from bench.errors import ModelError

HUB_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def online_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No offline variable, no proxy (the suite sets HF_HUB_OFFLINE), and a fresh probe."""
    for name in (*HUB_VARS, *PROXY_VARS):
        monkeypatch.delenv(name, raising=False)
    hub._reset_probe_for_tests()
    yield
    hub._reset_probe_for_tests()


def test_uncached_hub_id_with_unreachable_hub_fails_fast_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "good", "label": "pos"}\n')
    task = tmp_path / "t.yaml"
    task.write_text(
        "name: t\nsource: {type: local, path: d.jsonl}\ninputs: [text]\nlabels: [neg, pos]\n"
        "splits: {fractions: {test: 1.0}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in HUB_VARS and k not in PROXY_VARS}
    # Networking "disabled": the endpoint is a closed local port, the hub cache is empty.
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HOME=str(tmp_path / "hf"))
    cmd = [sys.executable, "-m", "bench", "run", "--task", str(task)]
    cmd += ["--model", "roberta-large-mnli", "--db", str(tmp_path / "r.sqlite")]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.perf_counter() - started
    assert_user_error(proc, "roberta-large-mnli", "not in the hub cache", "HF_HUB_OFFLINE")
    assert "unreachable" in proc.stderr
    # The bound. Before the probe this took about 30 s of retry warnings.
    assert elapsed < 5.0, (elapsed, proc.stderr)
    assert "Retrying" not in proc.stderr


def test_probe_sees_a_listening_endpoint_and_caches_the_answer(
    online_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub.offline_reason() is None and not hub.hub_offline()
    # Closed now, but the answer is the process's: one probe, not one per model load.
    assert hub.offline_reason() is None
    hub._reset_probe_for_tests()
    reason = hub.offline_reason()
    assert reason is not None and "unreachable" in reason and "HF_HUB_OFFLINE=1" in reason


def test_offline_variable_wins_without_probing(
    online_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_connect", lambda *a: pytest.fail("probed although offline"))
    assert hub.offline_reason() == "HF_HUB_OFFLINE is set"


def test_proxy_is_what_gets_probed(online_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("NO_PROXY", "")
    reason = hub.offline_reason()
    assert reason is not None and "proxy 127.0.0.1" in reason


def test_cached_hub_id_loads_offline_and_uncached_is_refused(
    online_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    (tmp_path / "models--org--cached" / "snapshots" / ("0" * 40)).mkdir(parents=True)
    hub.ensure_hub_model("org/cached")  # the loaders then read it with local_files_only
    with pytest.raises(ModelError, match="'org/missing': it is not a local folder") as info:
        hub.ensure_hub_model("org/missing")
    assert "\n" not in str(info.value)
