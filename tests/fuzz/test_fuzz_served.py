"""Served-model URLs, fuzzed: ``--model served:URL`` built from good and broken pieces (schemes,
loopback hosts, ports, paths, model names after ``#``, hostile strings) must each end in one
``error:`` line and exit code 2, quickly: a URL the harness cannot use is refused before any
request, and one it can use reaches a closed loopback port and is refused at once (never a
traceback from the HTTP library, never a wait through the retries).

Hosts are loopback literals or malformed: a generated host name would be looked up in DNS.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from served_helpers import free_port

from .conftest import COUNTS
from .fuzzkit import Case, check_case, fuzz_settings
from .hostile import HOSTILE_STRINGS

# A loopback port nothing listens on (it was free a moment ago).
CLOSED = free_port()
# 120 examples: fewer would add a warning line about wide intervals to stderr.
DATA = "".join(json.dumps({"q": f"{i} + 1", "a": str(i + 1)}) + "\n" for i in range(120))
TASK = (
    "name: g\nkind: generation\nsource: {type: local, path: gen.jsonl}\ninputs: [q]\n"
    "label_column: a\nprompt:\n  templates: ['Q: {q}\\nA:']\n  answer_pattern: '\\d+'\n"
    "  stop: ['\\n']\n"
)
FILES = {"gen.jsonl": DATA, "gen.yaml": TASK}

SCHEMES = ["http://", "https://", "HTTP://", "ftp://", "", "http:/", "http:", "//", "file://"]
HOSTS = ["127.0.0.1", "[::1]", "[::1", "::1", "", "user:pw@127.0.0.1", "127.0.0.1 ", "\t"]
PORTS = [f":{CLOSED}", "", ":0", ":65536", ":99999", ":-1", ":abc", ":", f": {CLOSED}", ":8o"]
PATHS = ["/v1", "", "/", "/v1/", "/v1/completions", "/ v1", "/v1?x=1", "/%zz", "/v1\n", "/v2"]
FRAGMENTS = ["", "#", "#smollm2", "#a#b", "#\x00", "# ", "#" + "m" * 300]
pieces = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=12))


@st.composite
def served_urls(draw: st.DrawFn) -> str:
    parts = [
        draw(st.sampled_from(SCHEMES)),
        draw(st.sampled_from(HOSTS)),
        draw(st.sampled_from(PORTS)),
        draw(st.sampled_from(PATHS)),
        draw(st.sampled_from(FRAGMENTS)),
    ]
    if draw(st.integers(0, 3)) == 0:
        # Junk in a place where it cannot become a host name: the path or the model name.
        at = draw(st.sampled_from([3, 4]))
        parts[at] += draw(pieces).replace("@", "")
    return "".join(parts)


CORPUS = {
    "good_url_closed_port": f"http://127.0.0.1:{CLOSED}/v1",
    "ipv6_closed_port": f"http://[::1]:{CLOSED}/v1",
    "with_model_closed_port": f"http://127.0.0.1:{CLOSED}/v1#smollm2",
    "nothing": "",
    "blank": "  ",
    "unclosed_ipv6": "http://[::1/v1",
    "port_too_large": "http://127.0.0.1:99999/v1",
    "port_not_a_number": "http://127.0.0.1:x/v1",
    "no_host": "http:///v1",
    "query": f"http://127.0.0.1:{CLOSED}/v1?a=b",
    "space_in_host": "http://a b/v1",
    "newline_in_path": f"http://127.0.0.1:{CLOSED}/v1\n",
    "no_scheme": f"127.0.0.1:{CLOSED}/v1",
}


def _case(name: str, url: str) -> Case:
    argv = ("run", "--task", "{dir}/gen.yaml", "--model", f"q=served:{url}", "--limit", "3")
    return Case(name, (*argv, "--no-progress"), files=FILES, mentions=("served", "model"))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_served_url_corpus(name: str, fuzz_root: Path) -> None:
    check_case(_case(name, CORPUS[name]), fuzz_root / f"served-{name}")
    COUNTS["served URLs (corpus)"] += 1


def test_generated_served_urls(fuzz_root: Path) -> None:
    count = 0

    @fuzz_settings(80)
    @given(served_urls())
    def check(url: str) -> None:
        nonlocal count
        count += 1
        check_case(_case(f"gen{count}", url), fuzz_root / f"served-gen{count}")

    check()
    COUNTS["served URLs (generated)"] += count
