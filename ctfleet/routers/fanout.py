"""Run one operation on many routers at once: bounded, with a deadline per router.

``run_bounded(jobs, work, concurrency=20, timeout_for=...)`` starts at most
``concurrency`` routers at a time, each in its own daemon thread. A router that passes
its deadline is reported ``timeout`` and its slot is given to the next one: one dead
router never stalls the run (its thread is abandoned; the drivers' own SSH timeouts end
it later). Progress goes to callbacks, not prints, so the CLI draws a Rich progress bar
and the Ansible module stays silent::

    outcomes = run_bounded(jobs, ops.audit, concurrency=20, timeout_for=lambda j: 240,
                           name_of=lambda j: (j.device.hostname, j.ct.code),
                           on_done=lambda o: bar.advance(task))
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence, TypeVar

J = TypeVar("J")

Status = Literal["ok", "changed", "in-norm", "failed", "timeout", "reverted"]


@dataclass
class Outcome:
    """What happened on one router.

    ``status``: ``ok`` (backup/diff/audit done), ``in-norm`` (push: nothing to change),
    ``changed`` (push: applied, checked, confirmed), ``reverted`` (push: management was
    lost and the router restored its saved configuration by itself), ``failed`` (with
    ``error_kind``), ``timeout`` (past its deadline).
    """

    hostname: str
    ct: str
    status: Status
    summary: str
    error_kind: str | None = None
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "changed", "in-norm")


def run_bounded(jobs: Sequence[J], work: Callable[[J], Outcome], *, concurrency: int,
                timeout_for: Callable[[J], float], name_of: Callable[[J], tuple[str, str]],
                on_start: Callable[[J], None] | None = None,
                on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Outcomes in the order of ``jobs`` (see the module docstring)."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    done: queue.Queue[tuple[int, Outcome]] = queue.Queue()
    results: dict[int, Outcome] = {}
    running: dict[int, tuple[float, float]] = {}  # index -> (started, deadline)
    pending = list(range(len(jobs)))
    pending.reverse()

    def target(i: int, job: J, started: float) -> None:
        host, ct = name_of(job)
        try:
            out = work(job)
        except Exception as exc:  # noqa: BLE001 - one router's bug must not end the run
            out = Outcome(host, ct, "failed", f"internal error: {type(exc).__name__}: {exc}", error_kind="internal")
        out.seconds = round(time.monotonic() - started, 2)
        done.put((i, out))

    while pending or running:
        while pending and len(running) < concurrency:
            i = pending.pop()
            job = jobs[i]
            if on_start:
                on_start(job)
            started = time.monotonic()
            running[i] = (started, started + timeout_for(job))
            threading.Thread(target=target, args=(i, job, started), daemon=True, name=f"router-{name_of(job)[0]}").start()
        wait = max(0.0, min(d for _, d in running.values()) - time.monotonic()) if running else 0.0
        try:
            i, out = done.get(timeout=wait + 0.01)
            if i in running:  # not already given up on
                running.pop(i)
                results[i] = out
                if on_done:
                    on_done(out)
        except queue.Empty:
            pass
        now = time.monotonic()
        for i, (started, deadline) in list(running.items()):
            if now >= deadline:
                running.pop(i)
                host, ct = name_of(jobs[i])
                out = Outcome(host, ct, "timeout", f"no result within {deadline - started:.0f} s; the other routers carried on",
                              error_kind="timeout", seconds=round(now - started, 2))
                results[i] = out
                if on_done:
                    on_done(out)
    return [results[i] for i in range(len(jobs))]
