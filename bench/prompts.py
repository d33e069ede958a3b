"""Tasks posed as prompts: few-shot sampling and (context, choices) requests for a causal LM.

A task's ``prompt`` spec (templates, verbalised choices, delimiters, few-shot settings) is data;
this module turns one evaluated example into the context a causal LM conditions on and the answer
continuations it scores. Few-shot examples are drawn per evaluated example from a seeded,
order-independent ranking of the pool, never include the evaluated example itself, and are the
same on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.errors import DataError, SpecError
from bench.specs import PromptSpec, TaskSpec, render_template, sha256_text
from bench.tasks.examples import Example


@dataclass(frozen=True)
class PromptRequest:
    """One example as a multiple-choice prompt: score ``context + choices[i]`` for every label."""

    context: str
    choices: list[str]
    label: int
    shots: list[str]  # uids of the few-shot examples, in prompt order


def _rank(seed: int, evaluated: str, candidate: str) -> str:
    return sha256_text(f"{seed}:{evaluated}:{candidate}")


def fewshot_examples(
    pool: Sequence[Example], evaluated: Example, k: int, seed: int
) -> list[Example]:
    """``k`` examples from ``pool`` for ``evaluated``: a hash ranking keyed by the seed and the
    evaluated example, so the draw depends neither on the pool's order nor on which other examples
    are evaluated. Examples with the evaluated example's uid or inputs are never drawn."""
    if k == 0:
        return []
    eligible = [ex for ex in pool if ex.uid != evaluated.uid and ex.inputs != evaluated.inputs]
    if k > len(eligible):
        raise DataError(
            f"{k}-shot prompts need {k} examples besides the evaluated one, but the few-shot "
            f"pool holds {len(eligible)}; lower k or draw from a larger split"
        )
    ranked = sorted(eligible, key=lambda ex: _rank(seed, evaluated.uid, ex.uid))
    return ranked[:k]


def prompt_spec(task: TaskSpec) -> PromptSpec:
    if task.prompt is None:
        raise SpecError(f"task {task.name!r} has no prompt format (a 'prompt:' section)")
    return task.prompt


def _fields(task: TaskSpec, example: Example) -> dict[str, str]:
    return dict(zip(task.inputs, example.inputs, strict=True))


def answer_texts(task: TaskSpec) -> list[str]:
    """The verbalised answer of each label, in label order."""
    spec = prompt_spec(task)
    return list(spec.choices) if spec.choices is not None else list(task.labels)


def build_request(
    task: TaskSpec,
    example: Example,
    pool: Sequence[Example],
    template: int = 0,
    k: int | None = None,
) -> PromptRequest:
    """The prompt for ``example`` with template number ``template`` and ``k`` shots (default: the
    spec's). Solved examples use the same template, each followed by its answer."""
    spec = prompt_spec(task)
    if not 0 <= template < len(spec.templates):
        raise SpecError(
            f"task {task.name!r} has {len(spec.templates)} prompt template(s); no template "
            f"{template}"
        )
    shots = fewshot_examples(pool, example, spec.fewshot.k if k is None else k, spec.fewshot.seed)
    answers = answer_texts(task)
    text = spec.templates[template]
    blocks = [
        render_template(text, _fields(task, shot)) + spec.target_delimiter + answers[shot.label]
        for shot in shots
    ]
    blocks.append(render_template(text, _fields(task, example)))
    context = spec.fewshot_delimiter.join(blocks)
    if spec.instruction:
        context = spec.instruction + spec.fewshot_delimiter + context
    return PromptRequest(
        context=context,
        choices=[spec.target_delimiter + a for a in answers],
        label=example.label,
        shots=[s.uid for s in shots],
    )
