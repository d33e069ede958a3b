"""Whether the Hugging Face hub can be reached: decided once per process, in at most a second or two.

Without a network the hub client retries every request with back-off (about 30 s of warnings)
before the real error. So before a hub id (not a local folder) is loaded, bench asks here: when
``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, or one TCP connection to the hub endpoint
(``HF_ENDPOINT``, or the proxy configured for it) fails within ``PROBE_TIMEOUT_S``, loaders use
the local hub cache only, and a model that is not there fails at once with one line that says why.

The probe opens a connection and closes it; it sends nothing. Torch-free and cheap to import.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from bench.errors import ModelError

DEFAULT_ENDPOINT = "https://huggingface.co"
# A reachable hub answers a TCP handshake in well under a second, even far away.
PROBE_TIMEOUT_S = 2.0
_TRUE = {"1", "true", "yes", "on"}

# (host, port) -> None when reachable, else why not. Per process: the network rarely changes
# between two models of one command, and the probe must not be paid per load.
_PROBED: dict[tuple[str, int], str | None] = {}


def hub_endpoint() -> str:
    """The hub's base URL, as the hub client reads it (``HF_ENDPOINT``)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline_by_env() -> str | None:
    """The name of the set offline variable (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return name
    return None


def _target(endpoint: str) -> tuple[str, int, str]:
    """(host, port, what) the first hop to ``endpoint`` connects to: the proxy if one applies."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    scheme = parts.scheme or "https"
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        proxied = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxied.hostname:
            return proxied.hostname, proxied.port or 8080, f"proxy {proxied.hostname}"
    port = parts.port or (443 if scheme == "https" else 80)
    return host, port, endpoint


def _connect(host: str, port: int, timeout: float) -> str | None:
    """None if ``host:port`` accepts a TCP connection within ``timeout``, else the reason.

    Name resolution has no timeout of its own, so the whole attempt runs in a daemon thread that
    is abandoned, not waited for, when it overruns.
    """
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(str(exc) or type(exc).__name__)

    thread = threading.Thread(target=attempt, name="bench-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.1)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def unreachable_reason() -> str | None:
    """Why the hub endpoint cannot be reached (None if it can), probed once per process."""
    endpoint = hub_endpoint()
    host, port, what = _target(endpoint)
    if not host:
        return f"HF_ENDPOINT {endpoint!r} names no host"
    key = (host, port)
    if key not in _PROBED:
        reason = _connect(host, port, PROBE_TIMEOUT_S)
        _PROBED[key] = None if reason is None else f"{what} is unreachable ({reason})"
    return _PROBED[key]


def offline_reason() -> str | None:
    """Why bench must not download from the hub now, or None when it may: the variable that is
    set, or the failed probe. Callers then load with ``local_files_only=True``."""
    name = offline_by_env()
    if name is not None:
        return f"{name} is set"
    reason = unreachable_reason()
    if reason is not None:
        return f"{reason}, so bench works offline as with HF_HUB_OFFLINE=1"
    return None


def hub_offline() -> bool:
    """True when hub ids must come from the local cache only (see :func:`offline_reason`)."""
    return offline_reason() is not None


def in_hub_cache(repo_id: str) -> bool:
    """Whether the local hub cache holds any snapshot of model ``repo_id`` (no network)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    snapshots = Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def not_cached_error(repo_id: str) -> str | None:
    """The one-line error for hub id ``repo_id`` when it must come from the cache and is not
    there; None when it may be downloaded or is cached."""
    reason = offline_reason()
    if reason is None or in_hub_cache(repo_id):
        return None
    return (
        f"cannot load model {repo_id!r}: it is not a local folder and not in the hub cache, and "
        f"{reason}; give a local model folder, or fetch it into the cache where the hub is "
        "reachable"
    )


def ensure_hub_model(repo_id: str) -> None:
    """Refuse at once, before the hub libraries are even imported, a hub id that can only come
    from the cache (offline, or the hub unreachable) and is not there."""
    message = not_cached_error(repo_id)
    if message is not None:
        raise ModelError(message)


def _reset_probe_for_tests() -> None:
    _PROBED.clear()
