"""The served backend's HTTP client against a real socket that accepts connections and never
answers (a hung server): no llama-cpp-python needed."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from bench.backends import served
from bench.errors import ModelError


@pytest.fixture
def hung_url() -> Iterator[str]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"


def test_a_server_that_never_answers_is_reported_while_retrying(
    hung_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(served, "BACKOFF_S", 0.01)
    client = served.ServedClient(hung_url, timeout=0.25)
    with pytest.raises(ModelError, match=r"/models: timed out after 5 retries"):
        client.get("/models")
    # Every try timed out and was counted; the user heard about it once, at the first timeout,
    # with the worst case still ahead (5 tries of 0.25 s, backoffs 0.01 to 0.16 s).
    assert client.counters.requests == served.RETRIES + 1
    assert client.counters.retries == {"timeout": served.RETRIES + 1}
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"warning: served model at {hung_url}/models has not answered in 0.25 s; "
        "retrying 5 more time(s), at most 2 s more"
    ]
