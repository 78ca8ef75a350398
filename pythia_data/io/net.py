"""Is the Hugging Face hub reachable? A short TCP check before any huggingface_hub call, so
an offline machine gets one clear line within seconds instead of ~25 s of retries (shared by
``hub/`` and ``tokenize/``, which may not import each other)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from urllib.parse import urlsplit

#: Seconds to wait for a TCP connection to the endpoint before giving up (huggingface_hub's
#: own retries on a refused connection take ~23 s; we check first, briefly).
CONNECT_TIMEOUT = 5.0

_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")

__all__ = ["CONNECT_TIMEOUT", "endpoint", "hub_offline", "quiet_hub", "unreachable_reason"]


def endpoint() -> str:
    """The hub endpoint: ``HF_ENDPOINT`` now, else huggingface_hub's configured default."""
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def unreachable_reason(url: str | None = None, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why the hub endpoint cannot be reached (``None``: a TCP connection opened within
    ``timeout`` seconds, or a proxy is set and decides)."""
    url = url or endpoint()
    if hub_offline():
        return "HF_HUB_OFFLINE is set: cannot reach the hub"
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return f"bad hub endpoint {url!r} (check HF_ENDPOINT)"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"bad hub endpoint {url!r} (check HF_ENDPOINT)"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, socket.timeout | TimeoutError):
            reason = f"no answer within {timeout:g} s"
        return f"cannot reach the hub at {url}: {reason}"
    return None


@contextlib.contextmanager
def quiet_hub():
    """huggingface_hub's retry log lines and warnings silenced inside the block (the caller
    reports one line of its own)."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
