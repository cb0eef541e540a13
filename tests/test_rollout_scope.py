"""A regional profile limits ``ctfleet rollout``: targets outside its region are refused
naming the profile's region, and the inventory the run uses is the profile's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def profile_04(tmp_path_factory):
    p = tmp_path_factory.mktemp("profiles") / "sdr-04.yaml"
    p.write_text('name: sdr-04\nregion: "04"\n')
    return p


def ctfleet(root, *args, env=None):
    # the installed console script: `python -m ctfleet.cli.main` would load the CLI module twice
    return subprocess.run([str(Path(sys.executable).parent / "ctfleet"), *args], cwd=root, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("selection, message", [
    (["--region", "05"], "--region: region 05 is outside the scope: profile 'sdr-04' is limited to region 04"),
    (["--ct", "05.081.01.01"], "--ct: CT 05.081.01.01 is outside the scope: profile 'sdr-04' is limited to region 04"),
])
def test_targets_outside_the_profiles_region_are_refused(root, profile_04, selection, message):
    res = ctfleet(root, "--profile", str(profile_04), "rollout", "site.yml", *selection, "--show-command")
    assert res.returncode == 1
    assert message in " ".join((res.stdout + res.stderr).split())
    assert "Traceback" not in res.stderr


def test_the_run_uses_the_profiles_inventory(root, profile_04, registry_only):
    res = ctfleet(root, "--profile", str(profile_04), "rollout", "site.yml", "--region", "04", "--show-command")
    assert res.returncode == 0, res.stderr
    assert f"CTFLEET_PROFILE={profile_04}" in res.stdout.replace("\n", "")
    inv = subprocess.run([sys.executable, str(root / "inventory/ctfleet_inventory.py"), "--list"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "CTFLEET_PROFILE": str(profile_04), "CTFLEET_ROOT": str(root)})
    assert inv.returncode == 0, inv.stderr
    doc = json.loads(inv.stdout)
    regions = {g for g in doc if g.startswith("region_")}
    assert regions == {"region_04"}, regions
    hosts = doc["_meta"]["hostvars"]
    assert hosts and all(v.get("ctfleet_region", "04") == "04" for v in hosts.values())


def test_a_lot_without_cts_in_the_region_is_refused(registry_only):
    from ctfleet.core.errors import InputError
    from ctfleet.rollout.scope import check_scope

    reg = registry_only.registry.scoped("04")
    check_scope("sdr-04", "04", reg, lot=3)  # lot 3 has communes in region 04
    empty = reg.scoped("04")
    empty.cts = {c: ct for c, ct in empty.cts.items() if ct.lot != 2}
    with pytest.raises(InputError, match="lot 2 has no CT in region 04"):
        check_scope("sdr-04", "04", empty, lot=2)
    check_scope("national", None, registry_only.registry, region="05")  # a national profile limits nothing
