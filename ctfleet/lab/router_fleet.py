"""The FRR lab as a ctfleet project view: a fleet directory, a profile, router settings
and an environment file, so the real CLI runs against the lab routers.

Written into the lab directory (outside the project)::

    DIR/fleet/{sites,devices}.csv     the lab routers, standing for real CTs
    DIR/profile.yaml                  fleet: files, results in DIR/results
    DIR/router-settings.yaml          login reference, backup repository DIR/backups
    DIR/lab.env                       export CTFLEET_PROFILE=... (mode 0600: the lab's throwaway secrets)
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
from pathlib import Path

from ctfleet.core.models import Device, Link, LinkType, Platform, Role, Site
from ctfleet.core.secrets import CredentialRef

LOGIN_ENV = "CTFLEET_LAB_RTR_LOGIN"
SNMP_ENV = "CTFLEET_LAB_RTR_SNMP"
LAB_SNMP = {"user": "ctfleet-noc", "auth_key": "lab-auth-key-0001", "priv_key": "lab-priv-key-0001"}


def lab_devices(lab, cts: list[str], platform: Platform = Platform.FRR) -> tuple[list[Site], list[Device]]:
    sites, devices = [], []
    for r, code in zip(lab.routers, cts):
        slug = code.replace(".", "-")
        sites.append(Site(code=f"S-{slug}", ct_code=code, name=f"lab site of {code}", uplink=Link(type=LinkType.VSAT, bandwidth_mbps=4)))
        devices.append(Device(hostname=r.name, site_code=f"S-{slug}", role=Role.ROUTER, platform=platform, os_version="frr-8.4",
                              mgmt_address=ipaddress.ip_address(r.address), credentials=CredentialRef(f"env:{SNMP_ENV}"),
                              snmp_version="v3"))
    return sites, devices


def lab_env(lab) -> dict[str, str]:
    return {LOGIN_ENV: lab.login_secret(), SNMP_ENV: json.dumps(LAB_SNMP)}


def write_lab_project(directory: Path, project, lab, cts: list[str]) -> Path:
    from ctfleet.importer import write_fleet_dir

    directory = Path(directory).resolve()
    sites, devices = lab_devices(lab, cts)
    (directory / "fleet").mkdir(parents=True, exist_ok=True)
    write_fleet_dir(directory / "fleet", sites, devices)
    (directory / "profile.yaml").write_text(f"name: frr-lab\nfleet: {{source: files, dir: {directory / 'fleet'}}}\n"
                                            f"results_dir: {directory / 'results'}\n")
    (directory / "router-settings.yaml").write_text(f"login: env:{LOGIN_ENV}\nbackup_repo: {directory / 'backups'}\n"
                                                    "revert_after_seconds: 60\nconnect_timeout_seconds: 5\n")
    env = {"CTFLEET_PROFILE": str(directory / "profile.yaml"),
           "CTFLEET_ROUTER_SETTINGS": str(directory / "router-settings.yaml"), **lab_env(lab)}
    path = directory / "lab.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return path
