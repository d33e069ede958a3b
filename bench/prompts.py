"""Tasks posed as prompts: few-shot sampling and (context, choices) requests for a causal LM.

A task's ``prompt`` spec (templates, verbalised choices, delimiters, few-shot settings) is data;
this module turns one evaluated example into the context a causal LM conditions on and the answer
continuations it scores. Few-shot examples are drawn per evaluated example from a seeded,
order-independent ranking of the pool, never include the evaluated example itself, and are the
same on every run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.errors import DataError, SpecError
from bench.specs import PromptSpec, TaskSpec, render_template, sha256_text
from bench.tasks.examples import Example, gold_answer


@dataclass(frozen=True)
class PromptRequest:
    """One example as a prompt.

    ``context`` and ``choices`` are the plain-text form: score ``context + choices[i]`` for every
    answer (or generate after ``context`` in a generation task, whose ``choices`` are empty).
    ``turns``, ``question`` and ``answers`` are the same prompt in pieces, for a chat template.
    """

    context: str
    choices: list[str]
    label: int
    shots: list[str]  # uids of the few-shot examples, in prompt order
    answers: list[str] = field(default_factory=list)  # the choices without the delimiter
    turns: list[tuple[str, str]] = field(default_factory=list)  # solved (question, answer)
    question: str = ""
    instruction: str = ""
    target: str = ""  # a generation task's reference answer

    def messages(self) -> list[dict[str, str]]:
        """The prompt as chat turns: each solved example a user question and an assistant
        answer, then the question; the instruction opens the first user turn."""
        out: list[dict[str, str]] = []
        for question, answer in self.turns:
            out.append({"role": "user", "content": question})
            out.append({"role": "assistant", "content": answer})
        out.append({"role": "user", "content": self.question})
        if self.instruction:
            out[0] = {"role": "user", "content": f"{self.instruction}\n\n{out[0]['content']}"}
        return out


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


def answer_texts(task: TaskSpec, example: Example | None = None) -> list[str]:
    """The verbalised answers, in label order: the spec's choices or the label names, or a
    multiple-choice example's own options (a generation task has none)."""
    if task.kind == "multiple_choice":
        return list(example.choices) if example is not None else []
    if task.kind == "generation":
        return []
    spec = prompt_spec(task)
    return list(spec.choices) if spec.choices is not None else list(task.labels)


def solved_answer(task: TaskSpec, example: Example) -> str:
    """The answer text a solved (few-shot) example shows."""
    if task.kind != "classification":
        return gold_answer(task, example)
    return answer_texts(task, example)[example.label]


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
    text = spec.templates[template]
    turns = [(render_template(text, _fields(task, s)), solved_answer(task, s)) for s in shots]
    question = render_template(text, _fields(task, example))
    blocks = [q + spec.target_delimiter + a for q, a in turns]
    blocks.append(question)
    context = spec.fewshot_delimiter.join(blocks)
    if spec.instruction:
        context = spec.instruction + spec.fewshot_delimiter + context
    answers = answer_texts(task, example)
    return PromptRequest(
        context=context,
        choices=[spec.target_delimiter + a for a in answers],
        label=example.label,
        shots=[s.uid for s in shots],
        answers=answers,
        turns=turns,
        question=question,
        instruction=spec.instruction,
        target=example.target,
    )


def extract_answer(text: str, pattern: str | None, which: str = "first") -> str:
    """A generation task's answer in ``text``: the first (or last) match of ``pattern`` (its
    first group if it has one), or the stripped text without a pattern; empty when nothing
    matches."""
    if pattern is None:
        return text.strip()
    matches = list(re.finditer(pattern, text))
    if not matches:
        return ""
    match = matches[0] if which == "first" else matches[-1]
    return (match.group(1) if match.re.groups else match.group(0)).strip()
