"""The documentation's commands are commands this CLI accepts: every `bench ...` line in a shell
block of the README and docs/ parses (subcommand, options, their types), and every task it
names exists, so a renamed option or task cannot leave the docs behind unnoticed. Parsing only:
nothing runs."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "console", ""}
TASK_OPTIONS = {"--task", "-t"}
TASK_LIST_OPTIONS = {"--train-tasks", "--test-tasks"}


def shell_blocks(text: str) -> list[str]:
    """The contents of the fenced blocks marked as shell (or unmarked)."""
    blocks: list[str] = []
    language: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if language is None:
                language, lines = line.strip()[3:].strip(), []
            else:
                if language in SHELL:
                    blocks.append("\n".join(lines))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def bench_commands(text: str) -> list[tuple[str, list[str]]]:
    """(line, arguments after `bench`) for each `bench` command, continuation lines joined,
    comments, leading VAR=value assignments and what follows a pipe or redirection dropped."""
    found = []
    for block in shell_blocks(text):
        for line in re.sub(r"\s*\\\n\s*", " ", block).splitlines():
            if "bench" not in line:
                continue
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words.pop(0)
            # The command ends where a pipe, redirection or next command begins.
            ends = [i for i, w in enumerate(words) if w in {"|", ">", ">>", "2>", "&&", ";"}]
            words = words[: ends[0]] if ends else words
            # A line with "..." elides options on purpose: it shows a fragment, not a command.
            if words and words[0] == "bench" and "..." not in words:
                found.append((line.strip(), words[1:]))
    return found


def parse_error(args: list[str]) -> str | None:
    """Why the CLI would refuse ``args`` (parsed down to the leaf command, as `bench` parses
    them), or None when they parse."""
    import typer

    from bench.cli import app

    # Typer carries its own copy of Click, so its classes are not the click package's: the
    # walk and the error handling go by what the objects do, not by their types.
    command = typer.main.get_command(app)
    try:
        context = command.make_context("bench", list(args))
        while hasattr(command, "resolve_command"):
            # A group keeps its unparsed words in protected_args (renamed in Click 8.2).
            protected = getattr(context, "_protected_args", None)
            if protected is None:
                protected = context.protected_args
            name, sub, rest = command.resolve_command(context, [*protected, *context.args])
            context = sub.make_context(name, rest, parent=context)
            command = sub
    except Exception as exc:
        if type(exc).__name__ == "Exit":  # --help and the like: parsed
            return None
        if hasattr(exc, "format_message"):  # a UsageError, BadParameter, NoSuchOption...
            return str(exc.format_message())
        raise
    return None


COMMANDS = [(doc, line, args) for doc in DOCS for line, args in bench_commands(doc.read_text())]


def test_the_docs_have_commands_to_check() -> None:
    # The extraction itself: a change of fences or wording must not silently empty the check.
    assert len(COMMANDS) >= 50
    assert any(args[:1] == ["attack"] for _, _, args in COMMANDS)
    assert any(args[:2] == ["assets", "fetch"] for _, _, args in COMMANDS)


@pytest.mark.parametrize(
    ("doc", "line", "args"),
    COMMANDS,
    ids=[f"{doc.name}:{' '.join(args[:2])}:{i}" for i, (doc, _, args) in enumerate(COMMANDS)],
)
def test_documented_commands_parse(doc: Path, line: str, args: list[str]) -> None:
    error = parse_error(args)
    assert error is None, f"{doc.name}: `{line}` does not parse: {error}"


def undefined_tasks(text: str, builtin: set[str]) -> list[str]:
    """The tasks the page's commands name that are neither built in, nor a YAML file, nor
    defined on the same page (a YAML `name:` or a quoted name in Python)."""
    missing = []
    for line, args in bench_commands(text):
        named = [b for a, b in itertools.pairwise(args) if a in TASK_OPTIONS]
        named += [t for a, b in itertools.pairwise(args) if a in TASK_LIST_OPTIONS
                  for t in b.split(",")]  # fmt: skip
        for task in named:
            defined = f"name: {task}\n" in text or f'"{task}"' in text
            if task not in builtin and not task.endswith((".yaml", ".yml")) and not defined:
                missing.append(f"{task} in `{line}`")
    return missing


def test_documented_tasks_exist() -> None:
    from bench.tasks import discover_tasks

    builtin = set(discover_tasks())
    missing = {doc.name: undefined_tasks(doc.read_text(), builtin) for doc in DOCS}
    assert not any(missing.values()), missing


def test_a_wrong_option_or_task_is_caught(tmp_path: Path) -> None:
    """The checks can fail: a misspelt option, a wrong value type and an unknown command do
    not parse, and the message is the CLI's own."""
    assert "No such option: --taks" in str(parse_error(["run", "--taks", "vader_movies"]))
    assert "Invalid value for '--limit'" in str(
        parse_error(["run", "--task", "vader_movies", "--limit", "many"])
    )
    assert "No such command" in str(parse_error(["no-such-command"]))
    assert parse_error(["run", "--task", "vader_movies", "--model", "m", "--limit", "5"]) is None
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nbench run --task vader_movie \\\n  --model m  # a comment\n"
        "bench leaderboard --format csv > out.csv\nbench run ... --limit 5\n```\n"
    )
    assert bench_commands(page.read_text()) == [
        ("bench run --task vader_movie --model m  # a comment", ["run", "--task", "vader_movie",
                                                                 "--model", "m"]),
        ("bench leaderboard --format csv > out.csv", ["leaderboard", "--format", "csv"]),
    ]  # fmt: skip
    assert undefined_tasks(page.read_text(), {"vader_movies"}) == [
        "vader_movie in `bench run --task vader_movie --model m  # a comment`"
    ]
