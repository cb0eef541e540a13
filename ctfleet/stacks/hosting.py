"""The hosting catalogue: capacity units, national platforms and system tenants.

A CT tenant's capacity comes from the norms (HST-1..HST-4 of its segment, see
``standards/norms/``). What the norms do not cover — the shared national platforms and the
system tenants every cloud runs (monitoring, package cache) — is sized once, in
``infra/hosting.yaml``, read here. Nothing in the stacks types a capacity number twice.

Quantities follow Kubernetes: cores (``1.5`` -> ``1500m``), GiB (``64`` -> ``64Gi``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ctfleet.core.conventions import QUOTA_CONTROLS
from ctfleet.core.errors import InputError, Problem
from ctfleet.core.yamlio import load_yaml, validate

HOSTING_FILE = Path("infra") / "hosting.yaml"


# ------------------------------------------------------------------ quantities
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(text: str | int | float) -> float:
    """A Kubernetes quantity as a number of base units (cores, bytes, items).

    >>> parse_quantity("1500m"), parse_quantity("2Gi") / 2**30, parse_quantity("30")
    (1.5, 2.0, 30.0)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    m = _QUANTITY.match(str(text))
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return float(m.group(1)) * _FACTORS[m.group(2)]


def cpu_quantity(cores: float) -> str:
    """``2`` -> ``'2'``, ``1.5`` -> ``'1500m'`` (whole millicores)."""
    milli = round(cores * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def gib_quantity(gib: float) -> str:
    mib = round(gib * 1024)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


@dataclass(frozen=True)
class Quota:
    """A tenant's capacity: the four hosting controls HST-1..HST-4."""

    cpu: float  # cores (HST-1)
    memory_gib: float  # HST-2
    storage_gib: float  # HST-3
    pods: int  # HST-4

    FIELDS = ("cpu", "memory_gib", "storage_gib", "pods")
    CONTROLS = QUOTA_CONTROLS

    def __add__(self, other: "Quota") -> "Quota":
        return Quota(self.cpu + other.cpu, self.memory_gib + other.memory_gib,
                     self.storage_gib + other.storage_gib, self.pods + other.pods)

    def hard(self) -> dict[str, str]:
        """``spec.hard`` of the ResourceQuota: requests and limits both capped at the norm."""
        cpu, mem = cpu_quantity(self.cpu), gib_quantity(self.memory_gib)
        return {
            "requests.cpu": cpu,
            "limits.cpu": cpu,
            "requests.memory": mem,
            "limits.memory": mem,
            "requests.storage": gib_quantity(self.storage_gib),
            "pods": str(self.pods),
        }

    @classmethod
    def from_hard(cls, hard: dict[str, Any]) -> "Quota":
        """Read back a ResourceQuota's ``spec.hard`` (the larger of requests and limits)."""
        def q(*keys: str) -> float:
            vals = [parse_quantity(hard[k]) for k in keys if k in hard]
            return max(vals) if vals else float("inf")
        return cls(cpu=q("requests.cpu", "limits.cpu", "cpu"),
                   memory_gib=q("requests.memory", "limits.memory", "memory") / 2**30,
                   storage_gib=q("requests.storage") / 2**30,
                   pods=q("pods"))  # type: ignore[arg-type]

    def exceeding(self, ceiling: "Quota") -> list[str]:
        """Fields of this quota above ``ceiling`` (small tolerance for unit rounding)."""
        return [f for f in self.FIELDS if getattr(self, f) > getattr(ceiling, f) + 1e-6]

    def show(self) -> str:
        return f"{cpu_quantity(self.cpu)} cpu, {gib_quantity(self.memory_gib)} mem, {gib_quantity(self.storage_gib)} disk, {self.pods} pods"


# ------------------------------------------------------------------ infra/hosting.yaml
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class QuotaSpec(_Strict):
    cpu: float = Field(gt=0)
    memoryGiB: float = Field(gt=0)
    storageGiB: float = Field(ge=0)
    pods: int = Field(gt=0)
    loadBalancers: int = Field(default=0, ge=0)  # LoadBalancer Services the tenant may hold (ctfleet:expose)

    def quota(self) -> Quota:
        return Quota(self.cpu, self.memoryGiB, self.storageGiB, self.pods)


class PlatformSpec(_Strict):
    slug: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")
    name: str
    purpose: str
    quota: QuotaSpec


class Resources(_Strict):
    cpu: float = Field(gt=0)
    memoryMiB: int = Field(gt=0)


class AppSpec(_Strict):
    requests: Resources
    limits: Resources
    dataGiB: float | None = Field(default=None, gt=0)  # persistent volume, if the app keeps data


class SystemTenants(_Strict):
    monitoring: QuotaSpec  # a region's collector shard, Prometheus, Alertmanager, Grafana
    results: QuotaSpec  # a region's results service + PostgreSQL
    pkgcache: QuotaSpec  # a region's apt-cacher-ng
    nationalMonitoring: QuotaSpec  # the national Prometheus (remote_write receiver)


class Apps(_Strict):
    collector: AppSpec
    prometheus: AppSpec
    aptCacherNg: AppSpec
    nationalPrometheus: AppSpec
    resultsService: AppSpec
    postgres: AppSpec
    alertmanager: AppSpec
    grafana: AppSpec


class TenantObjects(_Strict):
    """Object quotas every tenant gets besides its norm's capacity, scaled by its pod quota.

    Capsule-style: Services by type (LoadBalancer and NodePort: none, publish through the
    ingress), volume claims, ephemeral storage, ConfigMaps and Secrets.
    """

    ephemeralGiBPerPod: float = Field(default=2, gt=0)
    volumeClaimsPerPod: float = Field(default=0.25, gt=0)
    servicesPerPod: float = Field(default=0.5, gt=0)
    configMapsPerPod: float = Field(default=1, gt=0)
    secretsPerPod: float = Field(default=1, gt=0)
    loadBalancers: int = Field(default=0, ge=0)
    nodePorts: int = Field(default=0, ge=0)

    def hard(self, pods: int) -> dict[str, str]:
        """``spec.hard`` entries for a tenant of ``pods`` pods (each count at least 1; the
        namespace's own ``kube-root-ca.crt`` ConfigMap counts too, hence the +1)."""
        def n(ratio: float, extra: int = 0) -> str:
            return str(max(1, math.ceil(pods * ratio)) + extra)
        eph = gib_quantity(pods * self.ephemeralGiBPerPod)
        return {
            "requests.ephemeral-storage": eph, "limits.ephemeral-storage": eph,
            "persistentvolumeclaims": n(self.volumeClaimsPerPod), "services": n(self.servicesPerPod),
            "services.loadbalancers": str(self.loadBalancers), "services.nodeports": str(self.nodePorts),
            "count/configmaps": n(self.configMapsPerPod, 1), "count/secrets": n(self.secretsPerPod),
        }


class HostingCatalogue(_Strict):
    platforms: list[PlatformSpec] = Field(min_length=1)
    system: SystemTenants
    apps: Apps
    tenantObjects: TenantObjects = TenantObjects()

    def platform(self, slug: str) -> PlatformSpec | None:
        return next((p for p in self.platforms if p.slug == slug), None)


def load_hosting(root: Path) -> HostingCatalogue:
    """Load ``infra/hosting.yaml``; errors name the file, line and key."""
    path = root / HOSTING_FILE
    doc = load_yaml(path, str(HOSTING_FILE))
    cat: HostingCatalogue = validate(doc, HostingCatalogue)
    seen: set[str] = set()
    for i, p in enumerate(cat.platforms):
        if p.slug in seen:
            raise InputError(Problem(doc.path, f"duplicate platform slug {p.slug!r}", line=doc.line_of(("platforms", i, "slug")),
                                     key=f"platforms[{i}].slug"))
        seen.add(p.slug)
    return cat
