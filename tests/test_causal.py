"""The causal-LM adapter against an independent, unbatched computation on a tiny random model.

The model is a 2-layer Llama with a byte-level BPE tokenizer trained in the test on a few
sentences, so merges like " Paris" exist and the space-handling cases are real.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from lm_helpers import build_tiny_llama

from bench.errors import ModelError

REQUESTS = [
    ("The capital of France is", " Paris"),  # continuation starts with a space
    ("The capital of France is ", "Paris"),  # context ends with a space
    ("The capital of Italy is", " Rome, a very old city"),  # many tokens
    ("Question: is the sky blue? Answer:", " yes"),
    ("Question: is the sky blue? Answer:", " no"),
    ("A cat", " sat on the mat"),
    ("", "The dog ran"),  # empty context
    ("The capital of Spain is", " Madridx"),  # merges differently from the words seen
    ("Paris and", " Berlin and Rome are large cities in Europe."),
    ("zq", "k"),  # rare characters, one letter each
]


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-lm") / "model")


@pytest.fixture(scope="module")
def lm(tiny_lm_dir: Path, torch_one_thread: None) -> object:
    from bench.models.causal import CausalLM

    return CausalLM.load(str(tiny_lm_dir), device="cpu")


def _reference(folder: Path, context: str, continuation: str) -> tuple[float, bool, int]:
    """One unpadded forward pass per request; continuation = tokens after the common prefix."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    alone = tok(context, add_special_tokens=False)["input_ids"]
    k = 0
    while k < min(len(whole), len(alone)) and whole[k] == alone[k]:
        k += 1
    start = [tok.eos_token_id] if k == 0 else []
    seq = start + whole
    first = len(start) + k
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0]
    total, greedy = 0.0, True
    for pos in range(first, len(seq)):
        logprobs = torch.log_softmax(logits[pos - 1].double(), dim=-1)
        total += float(logprobs[seq[pos]])
        greedy = greedy and int(logprobs.argmax()) == seq[pos]
    return total, greedy, len(seq) - first


def test_boundary_rule_follows_the_whole_string(lm: object) -> None:
    from bench.models.causal import CausalLM

    assert isinstance(lm, CausalLM)
    tok = lm.tokenizer
    ctx, cont = lm.split_tokens("The capital of France is", " Paris")
    assert tok.decode(cont) == " Paris"
    assert tok.decode(ctx) == "The capital of France is"
    # The trailing space of the context merges into " Paris": that token is scored, the lone
    # space token of the context-only encoding is not.
    ctx2, cont2 = lm.split_tokens("The capital of France is ", "Paris")
    assert (ctx2, cont2) == (ctx, cont)
    assert tok.decode(ctx2 + cont2) == "The capital of France is Paris"
    assert tok("The capital of France is ")["input_ids"][-1] not in ctx2[-1:]
    # Multi-token continuation: every token after the boundary, nothing moved or dropped.
    _, cont3 = lm.split_tokens("The capital of Italy is", " Rome, a very old city")
    assert len(cont3) > 3 and tok.decode(cont3) == " Rome, a very old city"


# Questions with several answer choices each: the shared-prefix path (one prefix pass per
# question, its cache reused for every choice) serves these, mixed with lone requests.
CHOICE_REQUESTS = (
    [("Question: is grass red? Answer:", c) for c in (" yes", " no", " no, it is green", "x")]
    + [("The capital of France is ", c) for c in ("Paris", "Berlin and Rome", " Madrid")]
    + [("The dog ran in the", c) for c in (" park", " city of Europe")]
    + REQUESTS[:3]
)


@pytest.mark.parametrize("share_prefix", [True, False], ids=["shared-prefix", "one-pass-each"])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("requests", [REQUESTS, CHOICE_REQUESTS], ids=["mixed", "choices"])
def test_loglikelihood_matches_direct_computation(
    lm: object,
    tiny_lm_dir: Path,
    batch_size: int,
    share_prefix: bool,
    requests: list[tuple[str, str]],
) -> None:
    from bench.models.causal import CausalLM

    assert isinstance(lm, CausalLM)
    got = lm.loglikelihood(requests, batch_size=batch_size, share_prefix=share_prefix)
    assert len(got) == len(requests)
    for (context, continuation), (ll, greedy, n) in zip(requests, got, strict=True):
        ref_ll, ref_greedy, ref_n = _reference(tiny_lm_dir, context, continuation)
        assert n == ref_n, (context, continuation)
        assert abs(ll - ref_ll) < 1e-4, (context, continuation, ll, ref_ll)
        assert greedy == ref_greedy
    assert any(n > 3 for _, _, n in got)


def test_greedy_flag_true_for_the_models_own_argmax(lm: object) -> None:
    from bench.models.causal import CausalLM

    assert isinstance(lm, CausalLM)
    text = lm.greedy_until([("The capital of", [])], max_new_tokens=6)[0]
    assert text
    ll, greedy, n = lm.loglikelihood([("The capital of", text)])[0]
    # Re-tokenising generated text may merge differently; the flag must then be judged on the
    # tokens actually scored, which the reference does.
    _, cont = lm.split_tokens("The capital of", text)
    assert n == len(cont) and ll < 0
    expected = lm.greedy_until([("The capital of", [])], max_new_tokens=len(cont))[0]
    assert greedy == (lm.tokenizer.decode(cont) == expected)


def test_predictions_identical_at_batch_1_and_16(lm: object) -> None:
    from bench.models.causal import CausalLM

    assert isinstance(lm, CausalLM)
    questions = [
        ("The capital of France is", [" Paris", " Berlin", " Rome", " Madrid"]),
        ("Question: is grass red? Answer:", [" yes", " no"]),
        ("The dog ran in the", [" park", " mat", " city of Europe"]),
    ]
    flat = [(q, c) for q, choices in questions for c in choices]
    one = lm.loglikelihood(flat, batch_size=1)
    many = lm.loglikelihood(flat, batch_size=16)
    assert [r[2] for r in one] == [r[2] for r in many]
    assert [r[1] for r in one] == [r[1] for r in many]
    for a, b in zip(one, many, strict=True):
        assert abs(a[0] - b[0]) < 1e-4
    for context, choices in questions:
        assert (
            lm.score_choices(context, choices, batch_size=1)[:2]
            == lm.score_choices(context, choices, batch_size=16)[:2]
        )
    acc, acc_norm, logliks = lm.score_choices("The dog ran in the", [" park", " city of Europe"])
    assert acc == max(range(2), key=lambda i: logliks[i])
    normed = [logliks[0] / 5, logliks[1] / 15]
    assert acc_norm == max(range(2), key=lambda i: normed[i])


def test_greedy_until_is_batch_invariant_and_stops(lm: object) -> None:
    from bench.models.causal import CausalLM

    assert isinstance(lm, CausalLM)
    contexts = ["The capital of France is", "A cat", "Question: is the sky blue? Answer:", "Paris"]
    free = lm.greedy_until([(c, []) for c in contexts], max_new_tokens=12, batch_size=1)
    assert free == lm.greedy_until([(c, []) for c in contexts], max_new_tokens=12, batch_size=4)
    # Stop at a piece of what the model would write anyway: the text ends right before it.
    stops = []
    for text in free:
        assert text, "a random model should write something"
        stops.append(text[len(text) // 2 : len(text) // 2 + 2] or text)
    cut1 = lm.greedy_until(
        [(c, [s]) for c, s in zip(contexts, stops, strict=True)], 12, batch_size=1
    )
    cut4 = lm.greedy_until(
        [(c, [s]) for c, s in zip(contexts, stops, strict=True)], 12, batch_size=4
    )
    assert cut1 == cut4
    for text, stop, cut in zip(free, stops, cut1, strict=True):
        assert cut == text[: text.find(stop)]
        assert stop not in cut


def test_chat_template_flag(lm: object) -> None:
    from bench.models.causal import CausalLM

    assert isinstance(lm, CausalLM)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert not lm.has_chat_template
    assert lm.apply_chat_template(messages) == "Hi\n\nHello"
    lm.tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    try:
        assert lm.apply_chat_template(messages, use_template=False) == "Hi\n\nHello"
        assert lm.apply_chat_template(messages).startswith("<user>Hi<assistant>Hello")
    finally:
        lm.tokenizer.chat_template = None


def test_refuses_a_classifier(tiny_model_dir: Path) -> None:
    from bench.models.causal import CausalLM

    with pytest.raises(ModelError, match="is not a causal language model") as info:
        CausalLM.load(str(tiny_model_dir), device="cpu")
    assert "\n" not in str(info.value)


def test_refuses_a_folder_without_tokenizer(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from bench.models.causal import CausalLM

    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_lm_dir / name, folder / name)
    with pytest.raises(ModelError, match="no tokenizer files"):
        CausalLM.load(str(folder), device="cpu")


def test_refuses_pickle_only_weights(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from bench.models.causal import CausalLM

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_lm_dir, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="only pickle weights"):
        CausalLM.load(str(folder), device="cpu")


@pytest.mark.slow
def test_smollm2_converted_from_gguf(torch_one_thread: None) -> None:
    from bench.errors import AssetError
    from bench.models.causal import CausalLM
    from bench.models.gguf import default_causal_lm

    try:
        folder = default_causal_lm()
    except AssetError as exc:
        pytest.skip(f"smollm2 asset unavailable: {exc}")
    assert not (folder / "tokenizer.model").exists()
    # Read as tokenizer.json says under transformers 4 and 5 alike (vLLM runs 5).
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    started = time.perf_counter()
    lm = CausalLM.load(str(folder), device="cpu")
    assert time.perf_counter() - started < 120
    assert lm.has_chat_template and lm.dtype == "float32"
    assert lm.tokenizer.eos_token == "<|im_end|>"
    assert (
        lm.tokenizer("Hello")["input_ids"]
        == lm.tokenizer("Hello", add_special_tokens=False)["input_ids"]
    )
    assert "Paris" in lm.greedy_until([("The capital of France is", ["\n"])], 8)[0]
    prompt = lm.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "Paris" in lm.greedy_until([(prompt, ["<|im_end|>"])], 16)[0]
    acc, _, _ = lm.score_choices("The capital of France is", [" London", " Paris", " Berlin"])
    assert acc == 1
