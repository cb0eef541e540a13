"""The SNMP collector's configuration file, as a typed model (pure).

:mod:`ctfleet.monitors.collector` reads it (``--config collector.yaml``) and the regional
stack writes it (:mod:`ctfleet.stacks.plan`, :mod:`ctfleet.stacks.dataplane`): both use
:class:`CollectorConfig`, so a file the stack emits is one the collector loads, and a bad
field is refused when the plan is computed, not when the pod starts.

May import: the core only (conventions, sharding) and pydantic.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ctfleet.core.conventions import COLLECTOR_PORT
from ctfleet.core.listen import ListenAddress
from ctfleet.core.sharding import parse_shard

__all__ = ["ProbeConfig", "SnmpConfig", "CollectorConfig"]


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["icmp", "snmp", "udp_echo", "none"] = "icmp"
    echo_port: int = Field(default=7, ge=1, le=65535)  # for method udp_echo
    count: int = Field(default=5, ge=1, le=50)
    interval_seconds: float = Field(default=0.2, ge=0.0, le=10.0)
    timeout_seconds: float = Field(default=2.0, gt=0.0, le=30.0)
    concurrency: int = Field(default=200, ge=1, le=10000)


class SnmpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    timeout_seconds: float = Field(default=1.0, gt=0.0, le=30.0)
    retries: int = Field(default=1, ge=0, le=10)
    concurrency: int = Field(default=256, ge=1, le=10000)
    max_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    port: int = Field(default=161, ge=1, le=65535)


class CollectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    shard: str = "all"
    interval_seconds: float = Field(default=60.0, ge=1.0, le=86400.0)
    listen: ListenAddress(COLLECTOR_PORT) = f"127.0.0.1:{COLLECTOR_PORT}"  # type: ignore[valid-type]
    web_config: str | None = None
    probe: ProbeConfig = ProbeConfig()
    snmp: SnmpConfig = SnmpConfig()
    results_dir: str | None = None  # default: the profile's results_dir
    profile: str | None = None  # ctfleet profile file (default: ctfleet.yaml / CTFLEET_PROFILE)

    @field_validator("shard")
    @classmethod
    def _shard(cls, v: str) -> str:
        parse_shard(v)  # raises ValueError naming the valid forms
        return v
