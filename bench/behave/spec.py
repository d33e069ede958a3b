"""Behavioural test suites as data: templates, lexicons and named perturbations, never code.

A suite (YAML in ``tasks/behave/`` or any file) names its input columns and labels, holds
lexicons (lists of words or phrases) and replacement pairs, and lists tests of three types, after
CheckList (Ribeiro et al. 2020):

- ``mft`` (minimum functionality): template cases with an expected label;
- ``inv`` (invariance): a case and a variant (a perturbation, or a paired template) that should
  get the same prediction;
- ``dir`` (directional expectation): a case and a variant where the variant should get a label,
  or the probability of a label should not fall (``up``) or not rise (``down``).

Templates fill slots ``{lexicon}`` from the suite's lexicons; ``{lexicon:2}`` is a second,
different entry of the same lexicon; ``{{`` and ``}}`` are literal braces. Perturbations are one
of a fixed set of operations with data arguments: ``swap`` (entries of a lexicon swapped for
others), ``append`` / ``prepend`` (a template), ``typo`` (adjacent characters swapped),
``replace`` (replacement pairs, e.g. contractions, applied one way or the other) and
``punctuation`` (trailing punctuation removed or added). Everything is checked when the file is
read: a slot or lexicon key that does not exist is refused in one line naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bench.errors import SpecError, listing, shown
from bench.specs import Spec, check_name, parse_spec, read_yaml

TestType = Literal["mft", "inv", "dir"]
Template = str | dict[str, str]

# A slot: a lexicon name, optionally ":N" for the N-th distinct draw of that lexicon.
_SLOT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::([1-9]))?")
_LEXICON_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Cases a test may ask for: enough for a tight interval, few enough for a CPU.
MAX_CASES = 5000


class Perturbation(Spec):
    """Exactly one operation, with its data argument; ``column`` chooses the input column it
    changes (default: the last, e.g. an NLI hypothesis; ``swap`` changes every column
    consistently unless a column is given)."""

    swap: str | None = None
    append: str | None = None
    prepend: str | None = None
    typo: int | None = Field(default=None, ge=1, le=5)
    replace: str | None = None
    punctuation: bool | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Perturbation:
        ops = self.operations()
        if len(ops) != 1:
            raise ValueError(
                "a perturbation is exactly one of swap, append, prepend, typo, replace, "
                f"punctuation (got {', '.join(ops) or 'none'})"
            )
        if self.punctuation is False:
            raise ValueError("punctuation: true is the only value")
        return self

    def operations(self) -> list[str]:
        names = ("swap", "append", "prepend", "typo", "replace", "punctuation")
        return [n for n in names if getattr(self, n) is not None]

    @property
    def op(self) -> str:
        return self.operations()[0]


class Expectation(Spec):
    """What a directional test expects of its variant: predicted ``label`` (no direction), or
    the probability of ``label`` not falling (``up``) or not rising (``down``) by more than
    ``tolerance``."""

    label: str
    direction: Literal["up", "down"] | None = None
    tolerance: float = Field(default=0.0, ge=0.0, le=1.0)


class BehaveTest(Spec):
    name: str
    capability: str
    type: TestType
    description: str = ""
    # Where base cases come from: the suite's templates, or the task's own examples (test
    # split, a seeded sample of n), which only a perturbation can vary.
    source: Literal["templates", "task"] = "templates"
    templates: list[Template] = Field(default_factory=list)
    n: int = Field(default=50, ge=1, le=MAX_CASES)
    label: str | None = None
    variants: list[Template] = Field(default_factory=list)
    perturb: Perturbation | None = None
    expect: Expectation | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "test")

    @model_validator(mode="after")
    def _shape(self) -> BehaveTest:
        if self.source == "templates" and not self.templates:
            raise ValueError(f"test {self.name!r} has no templates")
        if self.source == "task" and (self.templates or self.variants or self.type == "mft"):
            raise ValueError(
                f"test {self.name!r} takes the task's examples: it has no templates or "
                "variants and is an inv or dir test with a perturbation"
            )
        if self.type == "mft":
            if self.label is None:
                raise ValueError(f"mft test {self.name!r} needs the label it expects")
            if self.perturb or self.variants or self.expect:
                raise ValueError(f"mft test {self.name!r} takes no perturb, variants or expect")
        else:
            if (self.perturb is None) == (not self.variants):
                raise ValueError(
                    f"{self.type} test {self.name!r} needs exactly one of perturb or variants"
                )
            if self.variants and len(self.variants) != len(self.templates):
                raise ValueError(
                    f"test {self.name!r}: {len(self.variants)} variants for "
                    f"{len(self.templates)} templates (one each)"
                )
            if self.type == "dir" and self.expect is None:
                raise ValueError(f"dir test {self.name!r} needs expect")
            if self.type == "inv" and (self.expect is not None or self.label is not None):
                raise ValueError(f"inv test {self.name!r} takes no expect or label")
        return self


class BehaveSuite(Spec):
    """A named, versioned behavioural test suite (see the module docstring)."""

    name: str
    version: str = "1"
    description: str = ""
    inputs: list[str] = Field(min_length=1, max_length=2)
    labels: list[str] = Field(min_length=2)
    lexicons: dict[str, list[str]] = Field(default_factory=dict)
    pairs: dict[str, list[tuple[str, str]]] = Field(default_factory=dict)
    tests: list[BehaveTest] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "behaviour suite")

    @field_validator("lexicons", "pairs")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, entries in value.items():
            if not _LEXICON_NAME.fullmatch(key):
                raise ValueError(f"lexicon key {shown(key, 40)} must be a word (a-z, 0-9, _)")
            if not entries:
                raise ValueError(f"lexicon {key!r} is empty")
            flat = [
                e for entry in entries for e in (entry if isinstance(entry, tuple) else [entry])
            ]
            if any(not e.strip() or e != e.strip() or "\n" in e for e in flat):
                raise ValueError(
                    f"lexicon {key!r} has an empty entry or one with edge spaces or a newline"
                )
            if len(set(entries)) != len(entries):
                raise ValueError(f"lexicon {key!r} lists an entry twice")
        return value

    @model_validator(mode="after")
    def _unique(self) -> BehaveSuite:
        names = [t.name for t in self.tests]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tests listed twice: {listing(dupes, 4)}")
        if len(set(self.inputs)) != len(self.inputs) or len(set(self.labels)) != len(self.labels):
            raise ValueError("inputs and labels must not repeat")
        return self


# --------------------------------------------------------------------------------------------------
# Templates


def template_slots(text: str) -> list[tuple[str, int]]:
    """The slots of a template as (lexicon, draw) pairs, in order of appearance; a ValueError
    for a brace that opens no slot or a slot that is not ``name`` or ``name:N``."""
    slots: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            i += 2
            continue
        if ch == "}":
            raise ValueError(f"a '}}' without its '{{' at character {i + 1}")
        if ch == "{":
            end = text.find("}", i)
            if end < 0:
                raise ValueError(f"a '{{' that is never closed at character {i + 1}")
            inner = text[i + 1 : end]
            match = _SLOT.fullmatch(inner)
            if match is None:
                raise ValueError(
                    f"slot {{{shown(inner, 30)[1:-1]}}} is not {{lexicon}} or {{lexicon:N}}"
                )
            slots.append((match[1], int(match[2] or 1)))
            i = end + 1
            continue
        i += 1
    return slots


def fill(text: str, values: dict[tuple[str, int], str]) -> str:
    """The template with every slot replaced by its value (escaped braces become braces)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("{{", i):
            out.append("{")
            i += 2
        elif text.startswith("}}", i):
            out.append("}")
            i += 2
        elif text[i] == "{":
            end = text.find("}", i)
            match = _SLOT.fullmatch(text[i + 1 : end])
            assert match is not None  # checked when the suite was read
            out.append(values[match[1], int(match[2] or 1)])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def columns_of(template: Template, inputs: list[str]) -> dict[str, str]:
    """A template as {column: text}: a string fills the only column."""
    if isinstance(template, str):
        return {inputs[0]: template}
    return dict(template)


# --------------------------------------------------------------------------------------------------
# Checking a suite against itself


def check_suite(suite: BehaveSuite, origin: str) -> None:
    """Refuse, in one line naming ``origin``, anything that cannot expand: a template that
    misses a column or names a slot no lexicon defines, a perturbation naming an unknown
    lexicon or pairs key, a label the suite does not have."""
    lexicons = suite.lexicons
    known = listing(sorted(lexicons), 6, 20) or "none"

    def fail(test: BehaveTest, message: str) -> SpecError:
        return SpecError(f"behaviour suite {origin}: test {shown(test.name, 40)}: {message}")

    def check_text(test: BehaveTest, text: str, where: str) -> None:
        try:
            slots = template_slots(text)
        except ValueError as exc:
            raise fail(test, f"{where}: {exc}") from None
        for name, draw in slots:
            if name not in lexicons:
                raise fail(
                    test,
                    f"{where} names slot {{{name}}}, which no lexicon defines (lexicons: {known})",
                )
            if draw > len(lexicons[name]):
                raise fail(
                    test,
                    f"{where} draws {{{name}:{draw}}} from lexicon {name!r}, which has only "
                    f"{len(lexicons[name])} entries",
                )

    for test in suite.tests:
        for kind, templates in (("template", test.templates), ("variant", test.variants)):
            for number, template in enumerate(templates, 1):
                where = f"{kind} {number}"
                if isinstance(template, str):
                    if len(suite.inputs) != 1:
                        raise fail(
                            test,
                            f"{where} is one text but the suite's inputs are "
                            f"{', '.join(suite.inputs)} (write a mapping of column to text)",
                        )
                    check_text(test, template, where)
                    continue
                missing = [c for c in suite.inputs if c not in template]
                extra = [c for c in template if c not in suite.inputs]
                if missing:
                    raise fail(test, f"{where} lacks column {shown(missing[0], 30)}")
                if extra:
                    raise fail(
                        test,
                        f"{where} names column {shown(extra[0], 30)}, which is not one of the "
                        f"suite's inputs ({', '.join(suite.inputs)})",
                    )
                for column in suite.inputs:
                    check_text(test, template[column], f"{where}, column {column}")
        for label in (test.label, test.expect.label if test.expect else None):
            if label is not None and label not in suite.labels:
                raise fail(
                    test,
                    f"label {shown(label, 30)} is not one of the suite's labels "
                    f"({', '.join(suite.labels)})",
                )
        p = test.perturb
        if p is None:
            continue
        if p.column is not None and p.column not in suite.inputs:
            raise fail(
                test,
                f"perturb column {shown(p.column, 30)} is not one of the suite's inputs "
                f"({', '.join(suite.inputs)})",
            )
        if p.swap is not None:
            if p.swap not in lexicons:
                raise fail(
                    test,
                    f"perturb swap names unknown lexicon key {shown(p.swap, 30)} "
                    f"(lexicons: {known})",
                )
            if len(lexicons[p.swap]) < 2:
                raise fail(test, f"lexicon {p.swap!r} needs two entries or more to swap")
        if p.replace is not None and p.replace not in suite.pairs:
            raise fail(
                test,
                f"perturb replace names unknown pairs key {shown(p.replace, 30)} "
                f"(pairs: {listing(sorted(suite.pairs), 6, 20) or 'none'})",
            )
        for text in (p.append, p.prepend):
            if text is not None:
                check_text(test, text, f"perturb {p.op}")


# --------------------------------------------------------------------------------------------------
# Finding and reading suites


def builtin_behave_dir() -> Path:
    """``behave/`` inside the built-in task folder (packaged, or the repository's ``tasks/``)."""
    from bench.tasks.registry import builtin_tasks_dir

    return builtin_tasks_dir() / "behave"


def _suite_files() -> dict[str, Path]:
    folder = builtin_behave_dir()
    if not folder.is_dir():
        return {}
    return {
        p.stem: p for p in sorted(folder.iterdir()) if p.suffix in {".yaml", ".yml"} and p.is_file()
    }


def list_behave_suites() -> list[str]:
    return sorted(_suite_files())


def load_behave_suite(name_or_path: str | Path) -> tuple[BehaveSuite, str]:
    """A built-in behaviour suite by name, or a suite file by path; (the suite, where it came
    from). Everything is checked here (see :func:`check_suite`)."""
    text = str(name_or_path)
    as_path = Path(name_or_path)
    separators = os.sep in text or (os.altsep is not None and os.altsep in text)
    if as_path.suffix.lower() in {".yaml", ".yml"} or separators:
        if as_path.is_dir():
            raise SpecError(f"behaviour suite file {as_path} is a directory")
        if not as_path.exists():
            raise SpecError(f"behaviour suite file {as_path} does not exist")
        path = as_path
    else:
        files = _suite_files()
        if text not in files and as_path.is_dir():
            # A folder is not a suite, whatever its name; a built-in name wins over a folder.
            raise SpecError(
                f"behaviour suite {shown(text, 60)} is a folder; give a suite YAML file or a "
                f"built-in name ({', '.join(sorted(files)) or 'none'})"
            )
        if text not in files:
            raise SpecError(
                f"unknown behaviour suite {shown(text, 60)} (known: "
                f"{', '.join(sorted(files)) or 'none'}; or a YAML path)"
            )
        path = files[text]
    origin = str(path)
    suite = parse_spec(BehaveSuite, read_yaml(path, "behaviour suite"), origin, "a behaviour suite")
    check_suite(suite, origin)
    return suite, origin
