"""The pytest plugin: a regression gate inside a user's own test suite.

``pytest --bench-gate gate.yaml`` adds one test per check of the gate config to the session
(read from the results store, ``--bench-db`` or ``$BENCH_DB``; with ``--bench-gate-run``, missing
runs are computed first); a failing check fails its test with the gate's table as the message.
Or, in a test::

    def test_int8_export_holds_up(bench_gate):
        bench_gate("gate.yaml")                   # fails the test with the table if it fails
        result = bench_gate("gate.yaml", candidate="sent-int8", fail=False)   # or inspect it

Registered through the ``pytest11`` entry point; nothing is imported until a gate is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bench.errors import BenchError
    from bench.gate import GateResult


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bench", "nlp-bench regression gates")
    group.addoption("--bench-gate", metavar="YAML", help="Run this gate config as tests.")
    group.addoption("--bench-db", metavar="PATH", help="Results store for gates.")
    group.addoption(
        "--bench-gate-run", action="store_true", help="Compute a gate's missing runs first."
    )


def _gate(
    config: Path | str,
    *,
    baseline: str | None = None,
    candidate: str | None = None,
    db: Path | str | None = None,
    run: bool = False,
) -> GateResult:
    from bench.gate import load_gate, run_gate
    from bench.gate.run import ensure_runs, resolve_model
    from bench.store import ResultStore, open_store

    spec = load_gate(Path(config))
    base_text = baseline or spec.baseline
    cand_text = candidate or spec.candidate
    if base_text is None or cand_text is None:
        raise pytest.UsageError(f"gate {config}: name the baseline and candidate models")
    with ResultStore(db) if run else open_store(db) as store:
        if run:
            models = [resolve_model(store, base_text), resolve_model(store, cand_text)]
            ensure_runs(store, spec, models)
            base_text, cand_text = models[0].name, models[1].name
        return run_gate(store, spec, base_text.split("=", 1)[0], cand_text.split("=", 1)[0])


@pytest.fixture
def bench_gate(request: pytest.FixtureRequest) -> Callable[..., GateResult]:
    """``bench_gate(config, baseline=None, candidate=None, db=None, run=False, fail=True)``:
    run a gate; with ``fail`` (the default) a failing gate fails the test with its table."""

    def check(config: Path | str, *, fail: bool = True, **options: Any) -> GateResult:
        from bench.gate.report import markdown

        options.setdefault("db", request.config.getoption("--bench-db"))
        result = _gate(config, **options)
        if fail and not result.passed:
            pytest.fail(markdown(result), pytrace=False)
        return result

    return check


class GateCheckItem(pytest.Item):
    """One check of a gate config, as a test."""

    def __init__(self, *, index: int, holder: GateHolder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index
        self.holder = holder

    def runtest(self) -> None:
        result = self.holder.result()
        check = result.checks[self.index]
        if check in result.blocking_failures():
            raise GateFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from bench.errors import BenchError

        if isinstance(excinfo.value, GateFailure):
            from bench.gate.report import markdown

            return markdown(excinfo.value.result)
        if isinstance(excinfo.value, BenchError):
            # Bad input (no such store, runs that are not stored or cannot be paired) is the
            # one line the command line prints, not pytest's own frames around the call (about
            # a thousand lines per check).
            return f"error: {excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return Path(self.holder.path), 0, f"bench gate: {self.name}"


class GateFailure(Exception):
    def __init__(self, result: GateResult) -> None:
        super().__init__("gate failed")
        self.result = result


class GateHolder:
    """Runs the gate once for all of its check items: its result, or the error it ended in.

    The gate runs when its first check runs, not at collection: tests earlier in the session
    may write the runs it reads, ``--bench-gate-run`` may compute for an hour (work that belongs
    in the test phase, never in ``--collect-only``), and the user's other tests still run and
    report. So an error cannot be a usage error at collection; every check fails with its one
    line instead, and the error is kept, so the gate (and ``--bench-gate-run``'s work) is not
    redone for each check only to fail the same way.
    """

    def __init__(self, config: pytest.Config, path: str) -> None:
        self.config = config
        self.path = path
        self._result: GateResult | None = None
        self._error: BenchError | None = None

    def result(self) -> GateResult:
        from bench.errors import BenchError

        if self._error is not None:
            raise self._error
        if self._result is None:
            try:
                self._result = _gate(
                    self.path,
                    db=self.config.getoption("--bench-db"),
                    run=bool(self.config.getoption("--bench-gate-run")),
                )
            except BenchError as exc:
                self._error = exc
                raise
        return self._result


class GateFile(pytest.File):
    def __init__(self, *, holder: GateHolder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.holder = holder

    def collect(self) -> Iterator[pytest.Item]:
        from bench.errors import BenchError
        from bench.gate import load_gate

        try:
            spec = load_gate(Path(self.holder.path))
        except BenchError as exc:
            raise pytest.UsageError(str(exc)) from None
        if spec.baseline is None or spec.candidate is None:
            # Known from the config alone: refused before any test runs, as a bad config is.
            raise pytest.UsageError(f"gate {self.holder.path}: name the baseline and candidate")
        for i, check in enumerate(spec.checks):
            yield GateCheckItem.from_parent(self, name=check.label, index=i, holder=self.holder)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    path = config.getoption("--bench-gate")
    if not path:
        return
    if not Path(path).is_file():
        raise pytest.UsageError(f"--bench-gate {path}: no such file")
    holder = GateHolder(config, path)
    gate_file = GateFile.from_parent(session, path=Path(path).resolve(), holder=holder)
    items.extend(gate_file.collect())
