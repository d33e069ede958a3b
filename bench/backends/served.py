"""Language models behind an OpenAI-compatible server (vLLM, llama.cpp, text-generation servers).

``--model NAME=served:http://HOST:PORT/v1`` (optionally ``...#MODEL`` to pick one of the
server's models) poses tasks through ``/v1/completions`` (plain prompts) and
``/v1/chat/completions`` (chat messages, formatted by the server's own template): greedy
generation with stop strings, and loglikelihoods from the prompt logprobs a server echoes back.

Echoed logprobs are trusted only after a probe: generate one token greedily after a fixed text,
then ask for the echo of the text plus that token; the token's logprob must be the same both
ways (within ``PROBE_TOLERANCE``). Some servers get the echo wrong (llama-cpp-python 0.3.x
reports log P(" Paris" | "The capital of France is") as -8.45 echoed and -0.26 generated), and a
loglikelihood task on such a server is refused in one line rather than scored with wrong numbers.

Requests run with bounded concurrency and are retried with exponential backoff on 429, 5xx and
timeouts; the retries are counted and recorded with the run. The run identity holds the server's
model id and what it reports about it (``/v1/models``), never the URL alone.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.backends import (
    Classifier,
    LanguageModel,
    LoadSettings,
    ModelIdentity,
    ModelType,
    register_backend,
)
from bench.errors import ModelError, shown
from bench.specs import canonical_json, sha256_text

if TYPE_CHECKING:
    from bench.specs import ModelSpec

PROBE_TEXT = "The capital of France is"
# Greedy means greedy: some servers apply a repetition penalty by default (llama-cpp-python's
# is 1.1, which changed 66 of 100 greedy answers on the arithmetic task). Named both ways
# (llama.cpp, vLLM); a server that rejects them gets requests without them.
NEUTRAL = {"repeat_penalty": 1.0, "repetition_penalty": 1.0}
PROBE_TOLERANCE = 0.05
RETRIES = 5
BACKOFF_S = 0.5
TIMEOUT_S = 120.0
CONCURRENCY = 4


def _split(path: str) -> tuple[str, str | None]:
    """(base URL ending in /v1, model id or None) from ``http://host:port/v1#model``. The URL is
    checked here, whole, so that no malformed one reaches the HTTP library."""
    url, _, model = path.partition("#")
    url = url.rstrip("/")
    problem = _url_problem(url)
    if problem is not None:
        raise ModelError(
            f"a served model is an http(s) URL such as http://127.0.0.1:8000/v1, not "
            f"{shown(path, 80)}: {problem}"
        )
    if not url.endswith("/v1"):
        url += "/v1"
    return url, model or None


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a served model's base URL, or None."""
    from urllib.parse import urlsplit

    if not url.startswith(("http://", "https://")):
        return "it does not start with http:// or https://"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "it holds a space or a control character"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number from 0 to 65535)
    except ValueError as exc:
        return str(exc).rstrip(".")
    if not parts.hostname:
        return "it names no host"
    if parts.query:
        return "a query string has no place in it"
    return None


@dataclass
class _Counters:
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)

    def retried(self, why: str) -> None:
        self.retries[why] = self.retries.get(why, 0) + 1


class ServedClient:
    """HTTP to one OpenAI-compatible server: retries with backoff, one line per failure."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S) -> None:
        import requests

        self.url = url
        self.timeout = timeout
        self.session = requests.Session()
        self.counters = _Counters()
        self.neutral: dict[str, float] = dict(NEUTRAL)

    def get(self, path: str) -> Any:
        return self._call("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        import requests

        last = ""
        for attempt in range(RETRIES + 1):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            self.counters.requests += 1
            try:
                response = self.session.request(
                    method, self.url + path, json=body, timeout=self.timeout
                )
            except requests.Timeout:
                self.counters.retried("timeout")
                last = "timed out"
                if self.counters.retries["timeout"] == 1 and attempt < RETRIES:
                    self._warn_slow(path, attempt)
                continue
            except requests.ConnectionError as exc:
                if attempt == 0 and self.counters.requests == 1:
                    # Nothing answers at all: no point waiting through every retry.
                    raise ModelError(
                        f"served model at {self.url} does not answer: {_reason(exc)}"
                    ) from None
                self.counters.retried("connection")
                last = _reason(exc)
                continue
            except requests.RequestException as exc:
                # Anything else the HTTP library refuses (a redirect loop, a URL it cannot
                # use) is not worth retrying.
                raise ModelError(
                    f"served model at {self.url}{path}: {type(exc).__name__}: "
                    f"{shown(str(exc), 160)}"
                ) from None
            if response.status_code == 429 or response.status_code >= 500:
                self.counters.retried(str(response.status_code))
                last = f"HTTP {response.status_code}"
                continue
            strict = body and self.neutral and any(n in response.text for n in self.neutral)
            if response.status_code == 400 and strict:
                # A strict server refuses the extra sampling fields: send none again.
                body = {k: v for k, v in (body or {}).items() if k not in self.neutral}
                self.neutral = {}
                continue
            if response.status_code >= 400:
                raise ModelError(
                    f"served model at {self.url}{path} refused a request: HTTP "
                    f"{response.status_code} {shown(response.text, 120)}"
                )
            try:
                return response.json()
            except ValueError:
                raise ModelError(
                    f"served model at {self.url}{path} answered with something that is not JSON"
                ) from None
        raise ModelError(f"served model at {self.url}{path}: {last} after {RETRIES} retries")

    def _warn_slow(self, path: str, attempt: int) -> None:
        """Once per client: a server that accepts connections and then says nothing would
        otherwise leave the command silent through every retry (over 3 minutes at the first
        contact's 30 s timeout)."""
        left = RETRIES - attempt
        most = left * self.timeout + sum(BACKOFF_S * 2**a for a in range(attempt, RETRIES))
        sys.stderr.write(
            f"warning: served model at {self.url}{path} has not answered in "
            f"{self.timeout:g} s; retrying {left} more time(s), at most {most:.0f} s more\n"
        )
        sys.stderr.flush()


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out"):
        if marker in text:
            return marker
    return type(exc).__name__


def _model_entry(client: ServedClient, wanted: str | None) -> dict[str, Any]:
    listing = client.get("/models")
    models = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(models, list) or not models:
        raise ModelError(f"served model at {client.url} lists no models (/v1/models)")
    if wanted is None:
        if len(models) > 1:
            ids = ", ".join(str(m.get("id")) for m in models[:5])
            raise ModelError(f"server at {client.url} serves several models ({ids}); add #MODEL")
        return dict(models[0])
    for entry in models:
        if entry.get("id") == wanted:
            return dict(entry)
    raise ModelError(f"server at {client.url} does not serve {shown(wanted, 60)}")


class ChatPrompt(str):
    """A prompt as chat messages, for the server to format with its own template (a served
    model's template is the server's, not ours to render); its text is the messages as JSON,
    which is what a run stores."""

    messages: list[dict[str, str]]

    def __new__(cls, messages: Sequence[dict[str, str]]) -> ChatPrompt:
        prompt = super().__new__(cls, json.dumps(list(messages), ensure_ascii=False))
        prompt.messages = [dict(m) for m in messages]
        return prompt

    def __reduce__(self) -> tuple[type[ChatPrompt], tuple[list[dict[str, str]]]]:
        # Pickled as its messages: a str subclass is otherwise rebuilt from its text, which
        # __new__ would read as messages (a run's prompts are pickled to Ray workers).
        return ChatPrompt, (self.messages,)


class ServedLM:
    """A ``LanguageModel`` over HTTP."""

    # The server formats chat messages with the model's template (/v1/chat/completions).
    has_chat_template = True

    def __init__(self, url: str, model: str, max_length: int = 2048) -> None:
        self.path = url
        self.model = model
        self.max_length = max_length
        self.client = ServedClient(url)
        self._echo_ok: bool | None = None

    @property
    def device(self) -> str:
        return "served"

    @property
    def dtype(self) -> str:
        return "served"

    def counters(self) -> dict[str, Any]:
        c = self.client.counters
        return {"served_requests": c.requests, "served_retries": dict(c.retries)}

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        return ChatPrompt(messages)

    def _complete(self, prompt: str, **options: Any) -> dict[str, Any]:
        return self._first_choice("/completions", "a completion", prompt=prompt, **options)

    def _chat(self, messages: list[dict[str, str]], **options: Any) -> dict[str, Any]:
        return self._first_choice("/chat/completions", "a chat turn", messages=messages, **options)

    def _first_choice(self, endpoint: str, what: str, **fields: Any) -> dict[str, Any]:
        """POST a greedy request to ``endpoint``; its first choice (a model-level error if none)."""
        body = {"model": self.model, "temperature": 0.0, **self.client.neutral, **fields}
        answer = self.client.post(endpoint, body)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices:
            raise ModelError(f"served model at {self.path} answered {what} without choices")
        return dict(choices[0])

    # -- generation ------------------------------------------------------------------------

    def greedy_until(
        self,
        requests: Sequence[tuple[str, list[str]]],
        max_new_tokens: int = 64,
        batch_size: int = 8,
    ) -> list[str]:
        def one(request: tuple[str, list[str]]) -> str:
            context, stops = request
            options = {"max_tokens": max_new_tokens, "stop": list(stops) or None}
            if isinstance(context, ChatPrompt):
                choice = self._chat(context.messages, **options)
                text = str((choice.get("message") or {}).get("content") or "")
            else:
                choice = self._complete(context, **options)
                text = str(choice.get("text", ""))
            cut = [text.index(s) for s in stops if s and s in text]
            return text[: min(cut)] if cut else text

        with ThreadPoolExecutor(max_workers=min(CONCURRENCY, max(1, len(requests)))) as pool:
            return list(pool.map(one, requests))

    # -- loglikelihoods --------------------------------------------------------------------

    def probe_echo(self) -> tuple[float, float]:
        """(the greedy next token's logprob when generated, the same token's logprob echoed)."""
        generated = self._complete(PROBE_TEXT, max_tokens=1, logprobs=1)
        logprobs = generated.get("logprobs") or {}
        tokens = logprobs.get("tokens") or []
        values = logprobs.get("token_logprobs") or []
        if not tokens or not values or values[0] is None:
            raise ModelError(
                f"served model at {self.path} returns no logprobs; loglikelihood tasks need them"
            )
        token, first = str(tokens[0]), float(values[0])
        echoed = self._complete(PROBE_TEXT + token, max_tokens=1, echo=True, logprobs=1)
        echo = echoed.get("logprobs") or {}
        offsets = echo.get("text_offset") or []
        echo_values = echo.get("token_logprobs") or []
        at = [i for i, o in enumerate(offsets) if o == len(PROBE_TEXT)]
        if not at or echo_values[at[0]] is None:
            raise ModelError(
                f"served model at {self.path} does not echo prompt logprobs; loglikelihood tasks "
                "need them"
            )
        return first, float(echo_values[at[0]])

    def _check_echo(self) -> None:
        if self._echo_ok is None:
            generated, echoed = self.probe_echo()
            self._echo_ok = abs(generated - echoed) <= PROBE_TOLERANCE
            self._probe = (generated, echoed)
        if not self._echo_ok:
            generated, echoed = self._probe
            raise ModelError(
                f"served model at {self.path} echoes wrong prompt logprobs (log P of the next "
                f"token: {generated:.3f} generated, {echoed:.3f} echoed); its loglikelihoods "
                "cannot be trusted, so multiple-choice and classification prompts are refused "
                "(generation tasks work)"
            )

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], batch_size: int = 8
    ) -> list[tuple[float, bool, int]]:
        self._check_echo()
        if any(isinstance(context, ChatPrompt) for context, _ in requests):
            raise ModelError(
                f"served model at {self.path}: loglikelihoods are read from a plain prompt's "
                "echo; chat messages have none to echo: pass --no-chat-template"
            )

        def one(request: tuple[str, str]) -> tuple[float, bool, int]:
            context, continuation = request
            # One token generated, not none: llama-cpp-python reads max_tokens=0 as "until the
            # context is full" (2,000 tokens per request once the repetition penalty is off);
            # tokens from the end of the prompt on are dropped below.
            text = context + continuation
            choice = self._complete(text, max_tokens=1, echo=True, logprobs=1)
            lp = choice.get("logprobs") or {}
            offsets = lp.get("text_offset") or []
            values = lp.get("token_logprobs") or []
            tops = lp.get("top_logprobs") or [None] * len(values)
            tokens = lp.get("tokens") or []
            total, greedy, count = 0.0, True, 0
            for i, offset in enumerate(offsets):
                if offset >= len(text):
                    break  # the generated token
                # Tokens that end past the context are the continuation's (a token merging the
                # context's last characters with the continuation's first counts, as in-process).
                end = offset + len(str(tokens[i])) if i < len(tokens) else offset
                if end <= len(context) or values[i] is None:
                    continue
                total += float(values[i])
                count += 1
                top = tops[i]
                if isinstance(top, dict) and top:
                    greedy = greedy and max(top, key=lambda t: top[t]) == tokens[i]
            return total, greedy, count

        with ThreadPoolExecutor(max_workers=min(CONCURRENCY, max(1, len(requests)))) as pool:
            return list(pool.map(one, requests))


@register_backend("served")
class ServedBackend:
    """Language models behind an OpenAI-compatible HTTP server."""

    name = "served"

    def identity(self, spec: ModelSpec) -> ModelIdentity:
        url, wanted = _split(spec.path)
        entry = _model_entry(ServedClient(url, timeout=30.0), wanted)
        # What the server says the model is: its id and anything else it reports about it.
        described = sha256_text(canonical_json(_plain(entry)))
        return ModelIdentity(self.name, "served", url, described, str(entry.get("id")))

    def model_type(self, spec: ModelSpec) -> ModelType:
        return "language_model"

    def require(self, spec: ModelSpec, model_type: ModelType) -> None:
        if model_type != "language_model":
            raise ModelError(f"a served model ({spec.path}) is a language model, not a classifier")

    def key_settings(self, settings: LoadSettings) -> dict[str, Any]:
        return {"dtype": "served"}

    def load_classifier(self, spec: ModelSpec, settings: LoadSettings) -> Classifier:
        self.require(spec, "classifier")
        raise AssertionError("unreachable")

    def load_language_model(self, spec: ModelSpec, settings: LoadSettings) -> LanguageModel:
        url, wanted = _split(spec.path)
        entry = _model_entry(ServedClient(url, timeout=30.0), wanted)
        return ServedLM(url, str(entry.get("id")), settings.max_length or 2048)


# What a /v1/models entry says that is not about the model: when the listing was made
# (``created``: a restart's time on llama.cpp, each request's on vLLM) and access permissions
# (vLLM lists a fresh permission object, with a random id and the request's time, every time).
_VOLATILE = frozenset({"created", "permission", "permissions"})


def _plain(entry: dict[str, Any]) -> Any:
    """The model entry without its volatile fields, as plain JSON values."""
    plain = {k: v for k, v in entry.items() if k not in _VOLATILE}
    return json.loads(json.dumps(plain, default=str))
