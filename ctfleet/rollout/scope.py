"""A regional profile limits a rollout to its region (pure).

With a profile for region 04, ``--region 05``, ``--ct 05.…`` or a ``--lot`` with no CT in
region 04 is refused before anything runs, naming the profile and its region; the
inventory the run uses is the profile's (``CTFLEET_PROFILE`` is handed to the inventory
script, see :func:`ctfleet.rollout.command.build`).
"""

from __future__ import annotations

from ctfleet.core.errors import InputError, Problem
from ctfleet.core.registry import Registry


def check_scope(profile_name: str, profile_region: str | None, scoped: Registry, *, ct: str | None = None,
                region: str | None = None, lot: int | None = None) -> None:
    """Raise :class:`InputError` when a selection is outside the profile's region.

    ``scoped`` is the registry already limited to the profile's region.
    """
    if profile_region is None:
        return
    whose = f"profile {profile_name!r} is limited to region {profile_region}"
    if region is not None and region != profile_region:
        raise InputError(Problem("--region", f"region {region} is outside the scope: {whose}",
                                 valid=f"--region {profile_region}, or a national profile"))
    if ct is not None and ct not in scoped.cts:
        raise InputError(Problem("--ct", f"CT {ct} is outside the scope: {whose}",
                                 valid=f"a CT code of region {profile_region} (`ctfleet registry list`)"))
    if lot is not None and not any(c.lot == lot for c in scoped.cts.values()):
        raise InputError(Problem("--lot", f"lot {lot} has no CT in region {profile_region}: {whose}",
                                 valid="a lot with CTs in the region: " + ", ".join(
                                     str(n) for n in sorted({c.lot for c in scoped.cts.values()}))))
