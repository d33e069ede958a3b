"""Loglikelihoods and generation through vLLM's OpenAI-compatible server (its CPU build, in the
environment ``make vllm`` makes: vLLM needs transformers 5, this package pins 4.57), serving the
default causal LM's float32 folder. Unlike llama-cpp-python's server, vLLM echoes correct prompt
logprobs, so this is the server that passes the echo probe: loglikelihood tasks run through it and
are compared with transformers in process on the same weights."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from served_helpers import free_port, prompt_rows, serving

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("BENCH_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no vLLM environment (make vllm)"),
]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from bench.models.gguf import default_causal_lm

    folder = default_causal_lm()
    port = free_port()
    command = [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
        "--served-model-name", "smollm2-f32", "--dtype", "float32", "--max-model-len", "2048",
        "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
    ]  # fmt: skip
    # Its own environment, not this one's; offline; a 1 GiB KV cache is plenty for 2,048 tokens.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1", VLLM_NO_USAGE_STATS="1",
               DO_NOT_TRACK="1")  # fmt: skip
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    # Eager: compiling the model's graph made start-up 90 to 130 s on two cores, eager 28 s.
    with serving(command, port, log, env, 600) as url:
        yield url


@pytest.fixture(scope="module")
def in_process() -> str:
    """The same folder, for transformers in this process."""
    from bench.models.gguf import default_causal_lm

    return str(default_causal_lm())


def _both(url: str, local: str, task: str, db: Path, **options: Any) -> tuple[list[Any], ...]:
    """The rows of one prompt run of ``task`` (its default shots) through the server and in
    process."""
    from bench.specs import ModelSpec

    models = [
        ModelSpec(name="vllm", path=url, backend="served"),
        ModelSpec(name="local", path=local),
    ]
    runs = prompt_rows(task, models, db, None, **options)
    return runs["vllm"][0], runs["local"][0]


@pytest.mark.assets("vader")
def test_vllm_passes_the_probe_and_its_loglikelihoods_equal_transformers(
    vllm_server: str, in_process: str, tmp_path: Path
) -> None:
    from bench.backends.served import PROBE_TOLERANCE, ServedLM

    generated, echoed = ServedLM(vllm_server, "smollm2-f32").probe_echo()
    assert abs(generated - echoed) < PROBE_TOLERANCE / 10, (generated, echoed)
    # Two choices by loglikelihood, three-shot plain prompts (an echo has no chat turns), on
    # VADER movie reviews (strategyqa until PyPI dropped the BIG-bench release: 2.4e-5).
    served, local = _both(
        vllm_server, in_process, "vader_movies", tmp_path / "r.sqlite", limit=40,
        chat_template=False,
    )  # fmt: skip
    assert len(served) == len(local) == 40
    assert [r.prompt for r in served] == [r.prompt for r in local]
    gap = max(abs(a - b) for s, t in zip(served, local, strict=True)
              for a, b in zip(s.scores, t.scores, strict=True))  # fmt: skip
    print(f"\nvader_movies, 40 three-shot prompts: largest loglikelihood gap vLLM vs "
          f"transformers {gap:.1e}")  # fmt: skip
    assert gap < 1e-3  # float32 sums in another order
    assert [r.pred for r in served] == [r.pred for r in local]
    assert [r.pred_norm for r in served] == [r.pred_norm for r in local]


@pytest.mark.parametrize(
    "task",
    [pytest.param("arithmetic", marks=pytest.mark.assets("bigbench")), "arithmetic_generated"],
)
def test_generation_through_vllm_agrees_with_transformers(
    vllm_server: str, in_process: str, tmp_path: Path, task: str
) -> None:
    # Through the chat template: vLLM renders it with transformers 5, the in-process model
    # with 4.57, from the same folder.
    served, local = _both(vllm_server, in_process, task, tmp_path / "r.sqlite", limit=40)
    same = sum(a.answer == b.answer for a, b in zip(served, local, strict=True))
    print(f"\n{task}, 40 questions: {same} answers through vLLM equal transformers'")
    assert same >= 38


def test_a_vllm_run_is_answered_from_the_store_when_asked_again(
    vllm_server: str, tmp_path: Path
) -> None:
    """vLLM lists each model with a permission object whose id is a fresh UUID and whose
    ``created`` is the time of the request; in the run key they made every invocation a new run
    (nothing answered from the store, a killed run never resumed)."""
    import bench

    def ask() -> Any:
        return bench.prompt([f"v=served:{vllm_server}"], ["arithmetic_generated"], shots=[0],
                            templates=[1], db=tmp_path / "r.sqlite", limit=5)  # fmt: skip

    first, again = ask(), ask()
    assert first.computed == 5 and again.computed == 0
    assert [r.run_key for r in again.records] == [r.run_key for r in first.records]
