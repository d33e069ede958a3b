"""Ray addresses, fuzzed: ``--ray-address`` built from good and broken pieces (the ``ray://``
prefix, hosts, ports, hostile strings) is either a (host, port) the socket layer can take or one
line naming the option; reaching it is one line too, quickly, whether nothing listens there or
something other than Ray answers. Before, an empty or over-long host label raised UnicodeError
from the resolver (a traceback), and an HTTP server on the port left Ray waiting forever.

Hosts that get connected to are loopback literals: a generated host name would be looked up in
DNS. Parsing alone takes any string.
"""

from __future__ import annotations

import http.server
import importlib.util
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import assert_user_error
from hypothesis import given
from hypothesis import strategies as st
from served_helpers import free_port

from bench.engine.executors import _probe, parse_address
from bench.errors import BenchError

from .conftest import COUNTS
from .fuzzkit import fuzz_settings
from .hostile import HOSTILE_STRINGS

CLOSED = free_port()  # a loopback port nothing listens on (it was free a moment ago)
PREFIXES = ["", "ray://", "RAY://", "ray:/", "http://", "//"]
HOSTS = ["127.0.0.1", "localhost", "[::1]", "[::1", "::1", "", ".", "..", "a..b", "-a", "a" * 64,
         ".".join(["a" * 60] * 5), "ü" * 70, "head_node", "10.0.0.5", "127.0.0.1 ", "\t", "a\x00b"]  # fmt: skip
PORTS = ["6379", "0", "65535", "65536", "99999", "-1", "", "abc", "١٢", "8o", " 6379", "6379/x"]


@st.composite
def addresses(draw: st.DrawFn) -> str:
    parts = [draw(st.sampled_from(PREFIXES)), draw(st.sampled_from(HOSTS)), ":"]
    parts.append(draw(st.sampled_from(PORTS)))
    if draw(st.integers(0, 3)) == 0:
        parts[draw(st.integers(0, 3))] = draw(
            st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text())
        )
    if draw(st.integers(0, 5)) == 0:
        parts.pop(2)  # no colon
    return "".join(parts)


def _parsed_or_refused(address: str) -> tuple[str, int] | None:
    try:
        host, port = parse_address(address)
    except BenchError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("--ray-address"), message
        return None
    assert 0 < port < 65536
    # What the socket layer does with it: a resolver error at worst (OSError), never the
    # UnicodeError an empty or over-long label raised.
    assert host.isascii() and all(0 < len(label) < 64 for label in host.rstrip(".").split("."))
    host.encode("idna")
    return host, port


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("ray://10.0.0.5:10001", ("10.0.0.5", 10001)),
        ("[::1]:6379", ("::1", 6379)),
        ("head_node:6379", ("head_node", 6379)),
        ("..:1", None),  # was UnicodeError (label empty)
        ("a" * 300 + ":1", None),  # was UnicodeError (label too long)
        ("ü" * 70 + ":1", None),  # was UnicodeError
        ("127.0.0.1:99999", None),
        ("127.0.0.1:١٢", None),  # int() reads Arabic-Indic digits; a port is ASCII
        ("127.0.0.1", None),
        ("127.0.0.1:6379/x", None),
    ],
)
def test_address_corpus(address: str, expected: tuple[str, int] | None) -> None:
    assert _parsed_or_refused(address) == expected


@fuzz_settings(400)
@given(addresses())
def test_generated_addresses_parse_or_are_refused_in_one_line(address: str) -> None:
    COUNTS["ray addresses"] += 1
    _parsed_or_refused(address)


@pytest.fixture(scope="module")
def web_port() -> Iterator[int]:
    """An HTTP server on loopback: something that answers, but not as Ray."""
    handler = http.server.BaseHTTPRequestHandler
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        yield int(web.server_address[1])
        web.shutdown()


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says anything."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield int(server.getsockname()[1])


def _refused_quickly(address: str) -> None:
    started = time.monotonic()
    with pytest.raises(BenchError) as refused:
        _probe(address)
    assert "\n" not in str(refused.value)
    # A connection and a reply, 3 s at most each (an IPv6 loopback may be refused at once).
    assert time.monotonic() - started < 8


@fuzz_settings(20)
@given(st.sampled_from(["", "ray://"]), st.sampled_from(["127.0.0.1", "[::1]", "localhost"]),
       st.booleans())  # fmt: skip
def test_loopback_addresses_that_are_not_ray_are_refused_quickly(
    web_port: int, prefix: str, host: str, closed: bool
) -> None:
    COUNTS["ray addresses reached"] += 1
    _refused_quickly(f"{prefix}{host}:{CLOSED if closed else web_port}")


def test_a_port_that_never_answers_is_refused_after_its_timeout(silent_port: int) -> None:
    _refused_quickly(f"127.0.0.1:{silent_port}")


@pytest.mark.parametrize("address", ["..:1", "127.0.0.1:99999", "web", "ray://127.0.0.1:1"])
def test_the_cli_refuses_them_in_one_line(web_port: int, tmp_path: Path, address: str) -> None:
    # "web": an HTTP server on the port (as on the dashboard's): Ray's own ray.init waited on
    # it for over 200 s. "ray://": Ray Client, whose grpc dependency the ray extra leaves out;
    # Ray said so as if the cluster were unreachable (where grpc is installed, the closed port
    # is what gets refused).
    web = address == "web"
    if web:
        address = f"127.0.0.1:{web_port}"
    client = address.startswith("ray://") and importlib.util.find_spec("grpc") is None
    command = [sys.executable, "-m", "bench", "run", "--task", "vader_movies", "--model", "x",
               "--db", str(tmp_path / "r.sqlite"), "--no-progress", "--executor", "ray",
               "--ray-address", address]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert_user_error(done, address, *(["not as Ray"] if web else []),
                      *(['pip install "ray[client]"'] if client else []))  # fmt: skip
    assert time.monotonic() - started < 60
