"""Loglikelihood scoring throughput: ``CausalLM.loglikelihood`` against a raw batched forward pass.

Both sides score the same multiple-choice requests (BIG-bench-like questions, 2-4 answer choices
each starting with a space, generated here) with the same model, in batches of 8:

- harness: ``CausalLM.loglikelihood``, which pays for the boundary rule (every request encoded
  whole and context alone), its length-sorted batch plan and one log-softmax per request, and
  saves by running each question's shared prefix once for all its choices and computing
  vocabulary logits only at scored positions;
- harness without prefix sharing (``share_prefix=False``): the same, one full pass per request,
  so its ratio isolates the harness's overhead from what sharing saves;
- raw: what a careful user writes by hand: encode each full string once, right-pad each batch of
  8 in the given order, one ``model(input_ids, attention_mask)`` per batch, log-softmax and gather
  at the continuation positions. How many continuation tokens each request has comes from the
  harness's ``split_tokens``, computed outside the timing, so both sides score the same tokens.

With ``--benchmark-enable`` the model is the converted SmolLM2 (64 requests); in the ordinary
suite it is a tiny random Llama (32 requests) so the test stays fast. The ratio (harness time /
raw time) is printed and kept in ``extra_info``; nothing asserts on time, only that both sides
give the same loglikelihoods.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lm_helpers import build_tiny_llama

BATCH = 8
TOLERANCE = 1e-3

_CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Peru", "Lima"),
]
_SIZES = ["a cat", "a dog", "a house", "a mountain", "an ant", "a car", "a city", "a mouse"]
# One worked example in front of each question for the real model, as few-shot prompts have: it
# makes the contexts a realistic length. The tiny model has only 128 positions, so none there.
_SHOT = "Question: What is the capital of Norway?\nAnswer: Oslo\n\n"


def _questions(n_requests: int, shot: str) -> list[tuple[str, str]]:
    """``(context, continuation)`` pairs, a question's choices together, as a task would send."""
    rng = random.Random(0)  # fixed: both runs of the benchmark time the very same requests
    requests: list[tuple[str, str]] = []
    kind = 0
    while len(requests) < n_requests:
        if kind % 3 == 0:
            country, capital = rng.choice(_CAPITALS)
            others = [c for _, c in _CAPITALS if c != capital]
            choices = [capital, *rng.sample(others, 3)]
            question = f"What is the capital of {country}?"
        elif kind % 3 == 1:
            a, b = rng.sample(_SIZES, 2)
            choices = ["yes", "no"]
            question = f"Is {a} larger than {b}?"
        else:
            x, y = rng.randint(2, 49), rng.randint(2, 49)
            choices = [str(x + y), str(x + y + rng.randint(1, 9)), str(abs(x - y))]
            question = f"What is {x} plus {y}?"
        rng.shuffle(choices)
        context = f"{shot}Question: {question}\nAnswer:"
        requests.extend((context, " " + choice) for choice in choices)
        kind += 1
    return requests[:n_requests]


def _raw_forward(
    model: Any, tokenizer: Any, requests: Sequence[tuple[str, str]], n_cont: Sequence[int]
) -> tuple[float, list[float]]:
    """(seconds, loglikelihoods): the hand-written loop, batches in the given order."""
    import torch

    pad = tokenizer.pad_token_id
    pad_id = int(pad) if pad is not None else 0
    device = model.device
    scores: list[float] = []
    started = time.perf_counter()
    # The tokenizer's own special tokens, as a user gets them; the setup checks that these are
    # exactly the harness's tokens.
    encoded: list[list[int]] = tokenizer([c + x for c, x in requests])["input_ids"]
    with torch.inference_mode():
        for start in range(0, len(encoded), BATCH):
            rows = encoded[start : start + BATCH]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            # Only the rows that predict continuation tokens get a log-softmax: the vocabulary
            # is large, and normalising every position would dominate the loop.
            picked, targets, sizes = [], [], []
            for i, row in enumerate(rows):
                n = n_cont[start + i]
                picked.append(logits[i, len(row) - 1 - n : len(row) - 1])
                targets.extend(row[len(row) - n :])
                sizes.append(n)
            logprobs = torch.log_softmax(torch.cat(picked).float(), dim=-1)
            chosen = logprobs.gather(1, torch.tensor(targets, device=device)[:, None])[:, 0]
            scores.extend(float(part.sum()) for part in chosen.split(sizes))
    return time.perf_counter() - started, scores


@pytest.mark.slow
@pytest.mark.benchmark
def test_loglikelihood_vs_raw_forward(
    benchmark: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from bench.models.causal import CausalLM

    if benchmark.enabled:
        # A full measurement under `--benchmark-enable` (tox -e bench) on the real default model.
        from bench.models.gguf import default_causal_lm

        folder, n, shot = default_causal_lm(), 64, _SHOT
    else:
        # In the suite: a tiny model on one thread (on a busy 2-core machine OpenMP threads spin
        # against each other and the timings mean nothing anyway).
        request.getfixturevalue("torch_one_thread")
        folder, n, shot = build_tiny_llama(tmp_path / "tiny-llama"), 32, ""
    lm = CausalLM.load(str(folder), device="cpu")
    requests = _questions(n, shot)
    splits = [lm.split_tokens(c, x) for c, x in requests]
    n_cont = [len(cont) for _, cont in splits]
    # The raw side encodes only the full string; it scores the same tokens as the harness only if
    # that encoding is the harness's context + continuation, and nothing is truncated.
    full = lm.tokenizer([c + x for c, x in requests])["input_ids"]
    assert [list(ids) for ids in full] == [ctx + cont for ctx, cont in splits]
    assert max(len(ids) for ids in full) <= lm.max_length
    assert min(n_cont) >= 1

    # Warm-up, one each: thread pools, lazy imports and first-call allocations are not throughput.
    lm.loglikelihood(requests, batch_size=BATCH)
    _raw_forward(lm.model, lm.tokenizer, requests, n_cont)

    harness_times: list[float] = []
    unshared_times: list[float] = []
    harness_scores: list[float] = []
    unshared_scores: list[float] = []

    def harness() -> None:
        started = time.perf_counter()
        results = lm.loglikelihood(requests, batch_size=BATCH)
        harness_times.append(time.perf_counter() - started)
        harness_scores[:] = [ll for ll, _, _ in results]

    def unshared() -> None:
        started = time.perf_counter()
        results = lm.loglikelihood(requests, batch_size=BATCH, share_prefix=False)
        unshared_times.append(time.perf_counter() - started)
        unshared_scores[:] = [ll for ll, _, _ in results]

    # Best of two each, interleaved: load from other processes on a shared machine then hits
    # every side alike instead of whichever happened to run during it.
    benchmark.pedantic(harness, rounds=1, iterations=1)
    raw_runs = [_raw_forward(lm.model, lm.tokenizer, requests, n_cont)]
    unshared()
    harness()
    raw_runs.append(_raw_forward(lm.model, lm.tokenizer, requests, n_cont))
    unshared()
    raw_s = min(seconds for seconds, _ in raw_runs)
    harness_s = min(harness_times)
    unshared_s = min(unshared_times)

    raw_scores = raw_runs[-1][1]
    worst = max(
        abs(a - b)
        for scores in (harness_scores, unshared_scores)
        for a, b in zip(scores, raw_scores, strict=True)
    )
    assert worst < TOLERANCE, worst

    ratio = harness_s / raw_s
    unshared_ratio = unshared_s / raw_s
    benchmark.extra_info.update(
        {
            "model": Path(folder).name,
            "n": n,
            "batch_size": BATCH,
            "continuation_tokens": sum(n_cont),
            "total_tokens": sum(len(ids) for ids in full),
            "harness_s": harness_s,
            "unshared_s": unshared_s,
            "raw_s": raw_s,
            "ratio": ratio,
            "unshared_ratio": unshared_ratio,
            "harness_req_per_s": n / harness_s,
            "raw_req_per_s": n / raw_s,
            "max_abs_diff": worst,
        }
    )
    print(
        f"\nloglikelihood: {n} requests, batch {BATCH}: harness {harness_s:.3f} s "
        f"({n / harness_s:.0f} req/s), without prefix sharing {unshared_s:.3f} s, raw forward "
        f"{raw_s:.3f} s; harness/raw = {ratio:.2f}, unshared/raw = {unshared_ratio:.2f}"
    )
