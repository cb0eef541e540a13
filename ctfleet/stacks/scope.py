"""Which stacks a profile sees: a regional team works on its region's stacks only (pure).

With a regional profile (``region: "04"``), ``ctfleet stacks list``, ``generate`` and ``plan``
see the region's SDR stack, the ECI/GCT stacks of its groupings and the SDL stacks of its
communes with arrondissements; not the national stack nor another region's. The national
view (no region) sees every stack. The Pulumi program is never scoped: it runs the stack
it is given.
"""

from __future__ import annotations

from ctfleet.stacks.names import StackRef


def stack_region(ref: StackRef, registry) -> str | None:
    """The region a stack belongs to (None for the national stack)."""
    if ref.tier == "sdr":
        return ref.unit
    if ref.tier == "eci":
        g = registry.groupings.get(ref.unit)
        return g.region_code if g else None
    if ref.tier == "sdl":
        ct = registry.cts.get(ref.unit)
        return ct.region_code if ct else None
    return None


def stacks_in_scope(stacks: dict[str, StackRef], registry, region: str | None) -> dict[str, StackRef]:
    """``stacks`` limited to ``region``'s (all of them when ``region`` is None), in the same order."""
    if region is None:
        return stacks
    return {name: ref for name, ref in stacks.items() if stack_region(ref, registry) == region}


def out_of_scope(stack: str, stacks: dict[str, StackRef], registry, region: str | None) -> str | None:
    """Why ``stack`` is not shown with this profile, or None when it is (or does not exist at all)."""
    if region is None or stack not in stacks or stack_region(stacks[stack], registry) == region:
        return None
    other = stack_region(stacks[stack], registry)
    whose = f"region {other}'s" if other else "the national"
    return f"is {whose} stack; the profile limits ctfleet to region {region}"
