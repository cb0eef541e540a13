"""Child processes that cannot outlive the caller.

Each child runs in its own session (so its whole process group can be signalled), gets
``PR_SET_PDEATHSIG`` (the kernel sends it SIGTERM if the parent dies, even by
SIGKILL), and is registered for an ``atexit`` sweep; :meth:`ManagedProcess.stop` sends
SIGTERM to the group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

_PR_SET_PDEATHSIG = 1
_LIVE: "set[ManagedProcess]" = set()
_LOCK = threading.Lock()


def _child_setup() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort: atexit and stop() still apply
        pass


class ManagedProcess:
    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(env) if env is not None else None, cwd=cwd,
                                         start_new_session=True, preexec_fn=_child_setup)
        with _LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace_s: float = 5.0) -> int | None:
        try:
            if self.proc.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    pass
            # the group may hold children of the child; make sure nothing is left
            self._signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            return self.proc.returncode
        finally:
            with _LOCK:
                _LIVE.discard(self)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the session leader's pid is the group id
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass


def stop_all() -> None:
    with _LOCK:
        procs = list(_LIVE)
    for p in procs:
        p.stop(grace_s=2.0)


atexit.register(stop_all)


def wait_until(predicate, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (a /proc scan, for leak checks)."""
    out = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmd:
            out.append(int(entry))
    return out
