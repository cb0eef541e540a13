"""Router settings the norms do not carry: where the regional services are, who may
manage a router, how to log in, how long a change may stay unconfirmed.

The norms say *how many* NTP servers a router needs (RTR-3) or *that* it logs to the
regional collector (RTR-4); these settings say *which* ones. ``{region}`` in a value is
the router's region code (``04``) and ``{region_int}`` the same as a number (``4``), so
one file serves the twelve regions. Values here are proposals (see the README); a
regional team points ``--settings`` (or ``CTFLEET_ROUTER_SETTINGS``) at its own file::

    login: env:CTFLEET_RTR_LOGIN_{region}     # JSON {"username": .., "password": ..} or {"username": .., "key_file": ..}
    ntp_servers: [10.{region_int}.255.123, 10.{region_int}.255.124]
    syslog_collector: 10.{region_int}.255.10
    mgmt_networks: [10.{region_int}.255.0/24, 10.0.255.0/24]
    banner: "Accès réservé ... {ct_name} ..."
    revert_after_seconds: 300                 # the change reverts by itself unless confirmed
    concurrency: 20
    connect_timeout_seconds: 15
    device_timeout_seconds: 240               # a whole operation on one router
    backup_repo: /var/lib/ctfleet/router-backups
    backup_recipients: [age1...]              # public keys the full configurations are encrypted to
    backup_identity: file:/etc/ctfleet/router-backups.agekey   # decrypts them: needed by restores only
    backup_metrics_file: /var/lib/prometheus/node-exporter/ctfleet_router_backups.prom
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ctfleet.core.errors import InputError, Problem
from ctfleet.core.secrets import CredentialRef
from ctfleet.core.yamlio import load_yaml, validate

ENV_SETTINGS = "CTFLEET_ROUTER_SETTINGS"
_AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")
ENV_BACKUP_REPO = "CTFLEET_ROUTER_BACKUPS"
DEFAULT_BACKUP_REPO = "/var/lib/ctfleet/router-backups"


class RouterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    login: str = "env:CTFLEET_RTR_LOGIN_{region}"
    ntp_servers: list[str] = Field(default=["10.{region_int}.255.123", "10.{region_int}.255.124"], min_length=1)
    syslog_collector: str = "10.{region_int}.255.10"
    mgmt_networks: list[str] = Field(default=["10.{region_int}.255.0/24", "10.0.255.0/24"], min_length=1)
    banner: str = ("Acces reserve aux agents habilites de {ct_name}. Toute connexion est journalisee. "
                   "Authorised access only; every session is logged.")
    snmp_group: str = Field(default="CTFLEET-NOC", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    revert_after_seconds: int = Field(default=300, ge=10, le=7200)
    concurrency: int = Field(default=20, ge=1, le=1000)
    connect_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    device_timeout_seconds: float = Field(default=240.0, gt=0, le=3600)
    backup_repo: str | None = None
    backup_recipients: list[str] = Field(default=[], description="age public keys (age1...) of the encrypted full copies")
    backup_identity: str | None = None  # credentials reference of the age identity (restores only)
    backup_metrics_file: str | None = None  # node_exporter textfile the backup run writes

    @field_validator("backup_recipients")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        bad = [r for r in v if not _AGE_RECIPIENT.match(r)]
        if bad:
            raise ValueError(f"not age public keys: {bad} (valid: age1 followed by 58 letters and digits; "
                             "ctfleet routers keygen prints one)")
        return v

    @field_validator("backup_identity")
    @classmethod
    def _identity_is_a_reference(cls, v: str | None) -> str | None:
        if v is not None:
            CredentialRef.parse(v)
        return v

    @field_validator("login")
    @classmethod
    def _login_is_a_reference(cls, v: str) -> str:
        check_login(v)
        return v

    @field_validator("mgmt_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            ipaddress.ip_network(net.replace("{region_int}", "1").replace("{region}", "1"), strict=True)
        return v

    # ---- per region
    def for_region(self, region: str) -> dict:
        """The values with ``{region}``/``{region_int}`` filled in for one region."""
        fill = lambda s: s.replace("{region_int}", str(int(region))).replace("{region}", region)  # noqa: E731
        return {
            "login": fill(self.login),
            "ntp_servers": [fill(s) for s in self.ntp_servers],
            "syslog_collector": fill(self.syslog_collector),
            "mgmt_networks": [ipaddress.ip_network(fill(n)) for n in self.mgmt_networks],
        }

    def backup_path(self, project_root: Path) -> Path:
        """Where backups go: ``--backup-repo``, ``CTFLEET_ROUTER_BACKUPS``, the settings, or the default;
        never inside the project (configurations stay out of the code repository)."""
        raw = os.environ.get(ENV_BACKUP_REPO) or self.backup_repo or DEFAULT_BACKUP_REPO
        return check_backup_path(Path(raw), project_root)


def check_backup_path(path: Path, project_root: Path) -> Path:
    path = path.expanduser().resolve()
    root = project_root.resolve()
    if path == root or root in path.parents:
        raise InputError(Problem(str(path), "the router backup repository must live outside the project",
                                 valid=f"a directory outside {root}, e.g. {DEFAULT_BACKUP_REPO}"))
    return path


def check_login(v: str) -> None:
    """Raise (without echoing the value, which may be a password) unless ``v`` is a reference."""
    CredentialRef.parse(v.replace("{region}", "01"))


def load_settings(path: str | Path | None = None) -> RouterSettings:
    chosen = path or os.environ.get(ENV_SETTINGS)
    if not chosen:
        return RouterSettings()
    p = Path(chosen)
    if not p.is_file():
        raise InputError(Problem(str(p), "router settings file not found", valid=f"a YAML file (see {__name__})"))
    doc = load_yaml(p, str(p))
    data = doc.plain()
    for key in ("login", "backup_identity"):
        if isinstance(data, dict) and data.get(key) is not None:
            # Checked here, not by the schema: schema errors quote the value, and this one may be a secret.
            try:
                check_login(str(data[key]))
            except ValueError as exc:
                raise InputError(Problem(str(p), str(exc), line=doc.line_of((key,)), key=key)) from None
    return validate(doc, RouterSettings)
