"""Prompt formats in task specs: the template language, few-shot draws, built requests."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_user_error

from bench.errors import DataError, SpecError
from bench.prompts import build_request, fewshot_examples
from bench.specs import TaskSpec, render_template, template_fields
from bench.tasks.examples import Example, example_uid
from bench.tasks.registry import parse_task

BASE = {
    "name": "pairs",
    "source": {"type": "local", "path": "x.jsonl"},
    "inputs": ["premise", "hypothesis"],
    "labels": ["entailment", "non-entailment"],
}
PROMPT = {
    "templates": [
        "{premise}\nQuestion: {hypothesis} True or false?\nAnswer:",
        "P: {premise} H: {hypothesis} ->",
    ],
    "choices": ["true", "false"],
}


def examples(n: int) -> list[Example]:
    out = []
    for i in range(n):
        inputs = (f"premise {i}", f"hypothesis {i}")
        label = i % 2
        out.append(Example(i, example_uid(inputs, BASE["labels"][label]), inputs, label))
    return out


def test_template_language_is_fields_and_escaped_braces_only() -> None:
    assert template_fields("{a} and {b_2} {{literal}}") == ["a", "b_2"]
    assert render_template("{a} {{x}} }}{{", {"a": "A"}) == "A {x} }{"
    for bad in ["{a.b}", "{0}", "{x!r}", "{x:>3}", "{}", "a { b", "}", "{a[0]}"]:
        with pytest.raises(ValueError, match="is not a field"):
            template_fields(bad)
    with pytest.raises(KeyError):
        render_template("{missing}", {})


def test_template_referencing_a_missing_field_is_a_spec_error() -> None:
    data = {**BASE, "prompt": {"templates": ["{premise} {claim}?"]}}
    with pytest.raises(SpecError, match=r"references \{claim\}, which is not an input"):
        parse_task(data, "t.yaml")
    wrong_count = {**BASE, "prompt": {"templates": ["{premise}"], "choices": ["a", "b", "c"]}}
    with pytest.raises(SpecError, match="3 answers for 2 labels"):
        parse_task(wrong_count, "t.yaml")
    with pytest.raises(SpecError, match="is not a field"):
        parse_task({**BASE, "prompt": {"templates": ["{premise.__class__}"]}}, "t.yaml")


def test_prompt_is_not_part_of_the_data_identity() -> None:
    plain = TaskSpec.model_validate(BASE)
    prompted = TaskSpec.model_validate({**BASE, "prompt": PROMPT})
    assert prompted.canonical() == plain.canonical()
    assert "prompt" not in plain.canonical()
    # Everything else still counts.
    assert TaskSpec.model_validate({**BASE, "name": "other"}).canonical() != plain.canonical()


def test_fewshot_draw_is_seeded_order_independent_and_never_the_evaluated_example() -> None:
    pool = examples(40)
    shuffled = pool[:]
    random.Random(5).shuffle(shuffled)
    for evaluated in pool:
        shots = fewshot_examples(pool, evaluated, 3, seed=7)
        assert len(shots) == 3 and evaluated.uid not in {s.uid for s in shots}
        assert shots == fewshot_examples(shuffled, evaluated, 3, seed=7)
    draws = {tuple(s.uid for s in fewshot_examples(pool, pool[0], 3, seed)) for seed in range(5)}
    assert len(draws) > 1, "the seed must matter"
    # Different evaluated examples get different shots (not one fixed block for all).
    assert len({tuple(s.uid for s in fewshot_examples(pool, e, 3, 7)) for e in pool[:10]}) > 1
    # An evaluated example that also sits in the pool under another index is still excluded.
    twin = Example(99, pool[3].uid, pool[3].inputs, pool[3].label)
    assert pool[3] not in fewshot_examples(pool, twin, 39, seed=1)


def test_k_larger_than_the_pool_is_a_data_error() -> None:
    pool = examples(4)
    assert len(fewshot_examples(pool, pool[0], 3, seed=0)) == 3
    with pytest.raises(DataError, match="4-shot prompts need 4 examples"):
        fewshot_examples(pool, pool[0], 4, seed=0)


def test_request_holds_solved_shots_then_the_question() -> None:
    task = TaskSpec.model_validate(
        {**BASE, "prompt": {**PROMPT, "instruction": "Decide.", "fewshot": {"k": 2, "seed": 3}}}
    )
    pool = examples(10)
    evaluated = examples(11)[10]
    req = build_request(task, evaluated, pool, template=1)
    shots = fewshot_examples(pool, evaluated, 2, seed=3)
    expected = "\n\n".join(
        [
            "Decide.",
            *(f"P: {s.inputs[0]} H: {s.inputs[1]} -> {['true', 'false'][s.label]}" for s in shots),
            "P: premise 10 H: hypothesis 10 ->",
        ]
    )
    assert req.context == expected
    assert req.choices == [" true", " false"] and req.label == evaluated.label
    assert req.shots == [s.uid for s in shots]
    zero = build_request(task, evaluated, pool, template=0, k=0)
    assert zero.context == "Decide.\n\npremise 10\nQuestion: hypothesis 10 True or false?\nAnswer:"
    with pytest.raises(SpecError, match="no template 2"):
        build_request(task, evaluated, pool, template=2)


def test_builtin_prompts_render_for_real_examples() -> None:
    from bench.tasks import get_task

    for name in ("epistemic_reasoning", "vader_movies"):
        spec = get_task(name).spec
        assert spec.prompt is not None and len(spec.prompt.templates) >= 2
        inputs = tuple(f"text {i}" for i in range(len(spec.inputs)))
        evaluated = Example(0, "u", inputs, 0)
        pool = [Example(i, f"u{i}", (*inputs[:-1], f"other {i}"), i % 2) for i in range(1, 9)]
        answers = spec.prompt.choices or spec.labels
        for t, template in enumerate(spec.prompt.templates):
            req = build_request(spec, evaluated, pool, template=t, k=3)
            question = render_template(template, dict(zip(spec.inputs, inputs, strict=True)))
            assert req.context.endswith(question)
            assert "{" not in req.context
            blocks = req.context.split(spec.prompt.fewshot_delimiter)
            assert len(blocks) == 4  # three solved examples, then the question
            for block, uid in zip(blocks, req.shots, strict=False):
                shot = next(p for p in pool if p.uid == uid)
                assert block.endswith(spec.prompt.target_delimiter + answers[shot.label])
            assert req.choices == [spec.prompt.target_delimiter + a for a in answers]


def test_cli_rejects_a_template_with_a_missing_field(tmp_path: Path) -> None:
    task = tmp_path / "t.yaml"
    task.write_text(
        "name: t\nsource: {type: local, path: x.jsonl}\ninputs: [text]\nlabels: [a, b]\n"
        "prompt:\n  templates: ['Review: {review}']\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "tasks", "show", str(task)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_user_error(proc, "references {review}")
