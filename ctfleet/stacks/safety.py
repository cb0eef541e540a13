"""Data safety: which objects hold data, and which changes would destroy it (pure).

A tenant's Namespace holds everything its CT runs; a PersistentVolumeClaim holds a
workload's data (Prometheus' TSDB, the package cache). Three guards, from the outside in:

1. ``ctfleet stacks plan STACK --deployed deployed.json`` compares what the stack declares
   now with the inventory it exported at its last update (``pulumi stack output
   dataInventory --json > deployed.json``) and lists each destructive change: a tenant
   removed (a registry edit that moves a CT out of the stack), a volume removed, or a
   volume whose immutable fields change (storage class, access modes, a smaller size), which
   the provider can only do by replacing the claim and its data.
2. The program declares Namespaces and PVCs with ``protect`` (the engine refuses to delete
   or replace them) and ``retain_on_delete`` (even an allowed removal leaves the object in
   the cluster for an administrator to back up), unless the stack's config sets
   ``ctfleet:allowDestructiveChanges: true``, which lifts ``protect`` for that update.
3. The policy ``data-protected`` (resource policy, :mod:`ctfleet.stacks.policies`) refuses
   an unprotected Namespace or PVC unless the object says the config allowed it.

Inventory shape (what the program exports as ``dataInventory``)::

    {"namespaces": ["ct-02-111-01-01", ...],
     "volumes": {"ctfleet-monitoring/prometheus-data": {"storageClassName": "standard",
                                                        "accessModes": ["ReadWriteOnce"], "storage": "50Gi"}}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ctfleet.stacks.hosting import parse_quantity

DATA_KINDS = ("Namespace", "PersistentVolumeClaim")


@dataclass(frozen=True)
class Change:
    subject: str  # Kind/namespace/name
    why: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.why}"


def data_inventory(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The data-bearing objects a stack declares (see the module docstring for the shape)."""
    namespaces, volumes = [], {}
    for o in objects:
        md = o.get("metadata") or {}
        if o.get("kind") == "Namespace":
            namespaces.append(md["name"])
        elif o.get("kind") == "PersistentVolumeClaim":
            spec = o.get("spec") or {}
            volumes[f"{md.get('namespace')}/{md['name']}"] = {
                "storageClassName": spec.get("storageClassName"),
                "accessModes": list(spec.get("accessModes") or []),
                "storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage"),
            }
    return {"namespaces": sorted(namespaces), "volumes": dict(sorted(volumes.items()))}


def destructive_changes(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """What going from the ``before`` inventory to ``after`` would destroy, in a stable order."""
    out: list[Change] = []
    kept = set(after.get("namespaces") or [])
    for ns in sorted(set(before.get("namespaces") or []) - kept):
        out.append(Change(f"Namespace/{ns}", "the tenant is no longer declared by this stack: deleting the namespace deletes "
                                             "everything in it (its CT moved to another tier, or left the registry)"))
    old_vols, new_vols = before.get("volumes") or {}, after.get("volumes") or {}
    for key in sorted(old_vols):
        subject = f"PersistentVolumeClaim/{key}"
        if key not in new_vols:
            if key.split("/", 1)[0] in kept:
                out.append(Change(subject, "the volume is no longer declared: deleting the claim deletes its data"))
            continue
        old, new = old_vols[key], new_vols[key]
        if old.get("storageClassName") != new.get("storageClassName"):
            out.append(Change(subject, f"storageClassName {old.get('storageClassName') or '(cluster default)'} -> "
                                       f"{new.get('storageClassName') or '(cluster default)'} replaces the volume and its data"))
        if sorted(old.get("accessModes") or []) != sorted(new.get("accessModes") or []):
            out.append(Change(subject, f"accessModes {old.get('accessModes')} -> {new.get('accessModes')} replaces the volume and its data"))
        if old.get("storage") and new.get("storage") and parse_quantity(new["storage"]) < parse_quantity(old["storage"]):
            out.append(Change(subject, f"storage {old['storage']} -> {new['storage']}: a volume cannot shrink, "
                                       "only be replaced with its data lost"))
    return out
