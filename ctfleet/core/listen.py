"""``HOST:PORT`` listen addresses of the project's servers, as one pydantic type (pure).

The collector's config (:mod:`ctfleet.core.collector_config`) and the results service's
(:mod:`ctfleet.results.service`) both take a ``listen:`` key; both check it here, so the
rule and the message are the same, each naming its own default as the example.

May import: the core only and pydantic.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

__all__ = ["ListenAddress"]


def _check(example: str):
    def check(v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be HOST:PORT, e.g. {example}")
        return v

    return check


def ListenAddress(default_port: int) -> object:  # noqa: N802  (used as a type: ``listen: ListenAddress(9161)``)
    """``str`` checked as ``HOST:PORT`` (``[::1]:PORT`` for IPv6); the error's example uses ``default_port``."""
    return Annotated[str, AfterValidator(_check(f"127.0.0.1:{default_port}"))]
