"""Sessions from recorded outputs (napalm's file-backed mock driver), for tests and demos.

A case directory holds one sub-directory per session the operation opens, in order
(``session-1``, ``session-2`` ...), each with napalm mock files (``get_config.1``,
``cli.1.show_ntp_status.0``, ``commit_config.1`` ...); ``OPEN_FAILS`` in one makes
that session fail to open, as a router that management no longer reaches. A case with
no ``session-N`` directory answers every session from its own files.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ctfleet.routers.drivers import DeviceChange, DeviceError, NapalmSession, RouterSession, Target


class RecordedConnector:
    def __init__(self, case: Path):
        self.case = Path(case)
        self.opened = 0
        self.changes: list[DeviceChange] = []
        self._lock = threading.Lock()

    def __call__(self, driver, target: Target, device_type: str = "cisco_ios") -> RouterSession:
        with self._lock:
            self.opened += 1
            n = self.opened
        d = self.case / f"session-{n}"
        if not d.is_dir():
            if n > 1 and (self.case / "session-1").is_dir():
                raise DeviceError("internal", f"the recorded case {self.case.name} has no session-{n}")
            d = self.case
        if (d / "OPEN_FAILS").exists():
            raise DeviceError("unreachable", f"no SSH answer from {target.address}:{target.port} within {target.connect_timeout:g} s"
                              f" (recorded: {(d / 'OPEN_FAILS').read_text().strip()})")
        session = NapalmSession("mock", target, {"path": str(d)})
        original = session.arm_and_apply

        def record(change: DeviceChange, revert_after: int):
            self.changes.append(change)
            return original(change, revert_after)

        session.arm_and_apply = record  # type: ignore[method-assign]
        return session
