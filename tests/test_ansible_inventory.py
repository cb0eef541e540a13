"""The Ansible dynamic inventory: pure rendering, then the real ansible-inventory.

Pure tests render a small hand-made fleet on region 12 (the smallest region, 16 CTs).
Component tests run ``.venv/bin/ansible-inventory -i inventory/ctfleet_inventory.py``
with a regional profile and check that what Ansible *merges* for a host (group vars by
depth) equals ``NormSet.resolve(ct)``, including a per-CT override file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ctfleet.ansible_inventory import NETWORK_OS, group_name, host_vars, norms_group_name, render
from ctfleet.core.models import CT, Device, Level, Link, Role, Segment, Site
from ctfleet.core.errors import InputError
from ctfleet.core.norms import load_norms
from ctfleet.core.secrets import CredentialRef
from ctfleet.project import attach_links, load_project

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "inventory" / "ctfleet_inventory.py"
VENV_BIN = ROOT / ".venv" / "bin"
ANSIBLE_INVENTORY = VENV_BIN / "ansible-inventory"
REGION = "12"
VALID_GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ------------------------------------------------------------------ a small fleet
def tiny_fleet(registry) -> None:
    """One site per CT: a router (platform cycling through every router platform), a server, a workstation."""
    routers = sorted(NETWORK_OS, key=lambda p: p.value)
    sites, devices = [], []
    for i, ct in enumerate(sorted(registry.cts.values(), key=lambda c: c.code)):
        site = f"T-{ct.slug}"
        sites.append(Site(code=site, ct_code=ct.code, name=f"Siège {ct.name_fr}",
                          uplink=Link(type=["fibre", "adsl", "4g", "vsat"][i % 4], bandwidth_mbps=8),
                          backup=Link(type="4g", bandwidth_mbps=20) if i % 3 == 0 else None))
        devices += [
            Device(hostname=f"r-{ct.slug}", site_code=site, role=Role.ROUTER, platform=routers[i % len(routers)],
                   os_version="17.9", mgmt_address=f"127.30.{i}.1", credentials=f"vault:creds/{REGION}.yml#router",
                   snmp_version="v3"),
            Device(hostname=f"srv-{ct.slug}", site_code=site, role=Role.SERVER, platform="debian", os_version="12",
                   mgmt_address=f"127.31.{i}.1", credentials="env:CTFLEET_SSH_KEY"),
            Device(hostname=f"ws-{ct.slug}", site_code=site, role=Role.WORKSTATION, platform="ubuntu",
                   os_version="24.04", mgmt_address=f"127.32.{i}.1"),
        ]
    registry.attach_fleet(sites, devices, "test fleet (tests/test_ansible_inventory.py)")


@pytest.fixture(scope="module")
def loaded():
    """Registry of region 12 with the tiny fleet, and the real norms (never mutates a shared registry)."""
    project = load_project(root=ROOT, with_fleet=False)
    registry = project.national.scoped(REGION)  # a new Registry object: safe to attach a fleet to
    tiny_fleet(registry)
    attach_links(registry, project.norms)  # link norms follow the tiny fleet's link types
    return registry, project.norms


@pytest.fixture(scope="module")
def inv(loaded):
    registry, norms = loaded
    return render(registry, norms, profile_name="test-12")


def commune_of(registry, segment: Segment) -> CT:
    return next(ct for ct in sorted(registry.cts.values(), key=lambda c: c.code)
                if ct.segment == segment and registry.sites_of(ct.code))


def merged_like_ansible(inv: dict, host: str) -> dict:
    """Group vars merged the way Ansible does (by depth, then name; deeper wins), then host vars."""
    parents: dict[str, set[str]] = {}
    for name, group in inv.items():
        for child in group.get("children", []) if name != "_meta" else []:
            parents.setdefault(child, set()).add(name)
    depth: dict[str, int] = {}

    def depth_of(g: str) -> int:
        if g not in depth:
            depth[g] = 0 if g == "all" else 1 + max((depth_of(p) for p in parents.get(g, {"all"})), default=0)
        return depth[g]

    direct = {name for name, group in inv.items() if name != "_meta" and host in group.get("hosts", [])}
    groups, todo = set(), list(direct)
    while todo:
        g = todo.pop()
        if g not in groups:
            groups.add(g)
            todo += parents.get(g, {"all"})
    out: dict = {}
    for g in sorted(groups, key=lambda g: (depth_of(g), g)):
        out.update(inv[g].get("vars", {}))
    out.update(inv["_meta"]["hostvars"][host])
    return out


def expected_norms(norms, ct: CT) -> tuple[dict, list]:
    resolved = norms.resolve(ct)
    values = json.loads(json.dumps({cid: r.value for cid, r in resolved.items() if r.applicable}))
    return values, sorted(cid for cid, r in resolved.items() if not r.applicable)


# ------------------------------------------------------------------ pure: shape
def test_group_names_are_valid_ansible_names(inv):
    bad = [name for name in inv if name != "_meta" and not VALID_GROUP.match(name)]
    assert bad == []
    assert all(inv[name] for name in inv if name != "_meta"), "an empty group dict would be read as a host"


def test_every_device_is_a_host_with_its_identity(loaded, inv):
    registry, _ = loaded
    hostvars = inv["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted(registry.devices)
    for hostname, device in registry.devices.items():
        v = hostvars[hostname]
        site = registry.sites[device.site_code]
        assert v["ansible_host"] == str(device.mgmt_address)
        assert (v["ctfleet_role"], v["ctfleet_platform"], v["ctfleet_os_version"]) == (device.role.value, device.platform.value, device.os_version)
        assert (v["ctfleet_ct"], v["ctfleet_site"]) == (site.ct_code, site.code)
        assert hostname in inv[group_name("site", site.code)]["hosts"]
        assert hostname in inv[group_name("role", device.role.value)]["hosts"]
        assert hostname in inv[group_name("platform", device.platform.value)]["hosts"]
        if device.role == Role.ROUTER:
            assert v["ansible_connection"] == "ansible.netcommon.network_cli"
            assert v["ansible_network_os"] == NETWORK_OS[device.platform]
        else:
            assert "ansible_network_os" not in v and "ansible_connection" not in v


def test_router_network_os_for_each_platform(inv):
    seen = {v["ctfleet_platform"]: v["ansible_network_os"] for v in inv["_meta"]["hostvars"].values() if v["ctfleet_role"] == "router"}
    assert seen == {"cisco_ios": "cisco.ios.ios", "frr": "frr.frr.frr", "mikrotik_routeros": "community.routeros.routeros",
                    "huawei_vrp": "community.network.ce"}


def test_credentials_are_references_never_secrets(inv):
    refs = [v["ctfleet_credentials_ref"] for v in inv["_meta"]["hostvars"].values() if "ctfleet_credentials_ref" in v]
    assert refs and all(CredentialRef.parse(r) == r for r in refs)
    text = json.dumps(inv)
    assert "password" not in text.lower() and "<secret>" not in text


def test_nesting_region_province_ct_site(loaded, inv):
    registry, _ = loaded
    assert [g for g in inv if g.startswith("region_")] == [f"region_{REGION}"]
    region_children = set(inv[f"region_{REGION}"]["children"])
    assert region_children == {f"ct_{REGION}"} | {group_name("province", p) for p in registry.provinces}
    for ct in registry.cts.values():
        ct_group = group_name("ct", ct.code)
        parent = f"region_{ct.region_code}" if ct.level == Level.REGION else group_name("province", ct.province_code)
        assert ct_group in inv[parent]["children"]
        assert [group_name("site", s.code) for s in registry.sites_of(ct.code)] == inv[ct_group]["children"]
        assert inv[ct_group]["vars"]["ctfleet_segment"] == ct.segment.value
        assert inv[ct_group]["vars"]["ctfleet_lot"] == ct.lot
        assert inv[ct_group]["vars"]["ctfleet_tiers"] == [t.value for t in ct.tiers]
        assert inv[ct_group]["vars"]["ctfleet_ct_name_ar"] == ct.name_ar
        for tier in ct.tiers:
            assert ct_group in inv[f"tier_{tier.value}"]["children"]


def test_each_ct_is_in_exactly_one_norms_group_under_its_segment_and_lot(loaded, inv):
    registry, norms = loaded
    norms_groups = [g for g in inv if g.startswith("norms_")]
    for ct in registry.cts.values():
        holders = [g for g in norms_groups if group_name("ct", ct.code) in inv[g]["children"]]
        assert holders == [norms_group_name(ct, norms.link_of(ct))]
    for g in norms_groups:
        segment, lot, _ = re.fullmatch(r"norms_(.+)_lot(\d)(_fibre|_adsl|_4g|_vsat|_none)?", g).groups()
        assert g in inv[f"segment_{segment}"]["children"] and g in inv[f"lot_{lot}"]["children"]
    assert sum(len(inv[g]["children"]) for g in norms_groups) == len(registry.cts)


def test_links_group_sites_and_site_vars(loaded, inv):
    registry, _ = loaded
    for site in registry.sites.values():
        group = group_name("site", site.code)
        assert group in inv[f"link_{site.uplink.type.value}"]["children"]
        v = inv[group]["vars"]
        assert (v["ctfleet_link_type"], v["ctfleet_link_bandwidth_mbps"]) == (site.uplink.type.value, site.uplink.bandwidth_mbps)
        assert v["ctfleet_backup_link_type"] == (site.backup.type.value if site.backup else None)


def test_norm_values_are_group_vars_not_host_vars(inv):
    assert not any(k.startswith("ctfleet_norm") for v in inv["_meta"]["hostvars"].values() for k in v)
    assert "ctfleet_norm_sources" not in json.dumps(inv)  # off by default


@pytest.mark.parametrize("segment", [Segment.COMMUNE_UNDER_15K, Segment.COMMUNE_100K_250K, Segment.COUNCIL])
def test_merged_norms_of_a_server_equal_resolve(loaded, inv, segment):
    registry, norms = loaded
    ct = commune_of(registry, segment)
    server = next(d.hostname for d in registry.devices_of(ct.code) if d.role == Role.SERVER)
    merged = merged_like_ansible(inv, server)
    values, not_applicable = expected_norms(norms, ct)
    assert merged["ctfleet_norms"] == values
    assert merged["ctfleet_norms_not_applicable"] == not_applicable
    assert merged["ctfleet_segment"] == segment.value and merged["ctfleet_ct"] == ct.code


def test_segments_really_differ_in_the_inventory(loaded, inv):
    registry, norms = loaded
    small, large = (commune_of(registry, s) for s in (Segment.COMMUNE_UNDER_15K, Segment.COMMUNE_100K_250K))
    small = inv[norms_group_name(small, norms.link_of(small))]["vars"]["ctfleet_norms"]
    large = inv[norms_group_name(large, norms.link_of(large))]["vars"]["ctfleet_norms"]
    assert small != large and small["LNK-1"] < large["LNK-1"]


def test_per_ct_override_goes_on_the_ct_group_complete(loaded, data_copy):
    registry, _ = loaded
    ct = commune_of(registry, Segment.COMMUNE_UNDER_15K)
    (data_copy / "standards" / "norms" / "ct" / f"{ct.code}.yaml").write_text(
        "description: test override\nvalues:\n  SYS-2: 7\n  LNK-1: 1\nnot_applicable: [WS-4]\n", encoding="utf-8")
    norms = load_norms(data_copy / "standards", ct_codes=set(registry.cts))
    inv = render(registry, norms)
    ct_vars = inv[group_name("ct", ct.code)]["vars"]
    values, not_applicable = expected_norms(norms, ct)
    assert ct_vars["ctfleet_norms"] == values and values["SYS-2"] == 7 and "WS-4" not in values
    assert ct_vars["ctfleet_norms_not_applicable"] == not_applicable
    assert ct_vars["ctfleet_norms_layers"][-1] == f"ct {ct.code}"
    server = next(d.hostname for d in registry.devices_of(ct.code) if d.role == Role.SERVER)
    assert merged_like_ansible(inv, server)["ctfleet_norms"]["SYS-2"] == 7
    others = [c for c in inv[norms_group_name(ct, norms.link_of(ct))]["children"] if c != group_name("ct", ct.code)]
    assert others and all("ctfleet_norms" not in inv[c]["vars"] for c in others)


def test_codes_collapsing_to_one_group_name_are_refused(loaded):
    registry, norms = loaded
    again = load_project(root=ROOT, with_fleet=False).national.scoped(REGION)
    ct = min(again.cts)
    again.attach_fleet([Site(code=code, ct_code=ct, name="x", uplink=Link(type="adsl", bandwidth_mbps=8)) for code in ("S-1.2", "S_1-2")],
                       [], "collision test")
    with pytest.raises(InputError, match="group name 'site_s_1_2' would stand for both"):
        render(again, norms)


def test_render_is_deterministic_and_sorted(loaded, inv):
    registry, norms = loaded
    again = load_project(root=ROOT, with_fleet=False).national.scoped(REGION)
    tiny_fleet(again)
    assert json.dumps(render(again, norms, profile_name="test-12")) == json.dumps(inv)
    assert list(inv)[1:] == sorted(list(inv)[1:]) and list(inv)[0] == "_meta"
    for name, group in inv.items():
        for key in ("hosts", "children"):
            if key in group:
                assert group[key] == sorted(group[key]), name


def test_host_vars_add_norm_sources(loaded):
    registry, norms = loaded
    ct = commune_of(registry, Segment.COMMUNE_UNDER_15K)
    host = f"srv-{ct.slug}"
    v = host_vars(registry, norms, host)
    assert v["ctfleet_ct"] == ct.code
    assert v["ctfleet_norm_sources"]["SYS-2"] == norms.resolve(ct)["SYS-2"].source
    assert re.fullmatch(r"standards/norms/.+\.yaml:\d+", v["ctfleet_norm_sources"]["SYS-2"])
    with pytest.raises(InputError, match="unknown host 'nope'"):
        host_vars(registry, norms, "nope")


def test_a_project_renders_alone(regional):
    """render(project) / host_vars(project, host): the CLI's call, with the profile's scope and name."""
    inv = render(regional)
    assert inv["all"]["vars"]["ctfleet_profile"] == "test-region-12"
    assert sorted(inv["_meta"]["hostvars"]) == sorted(regional.registry.devices)
    assert render(regional.registry, regional.norms, profile_name="test-region-12") == inv
    host = min(regional.registry.devices)
    assert host_vars(regional, host) == host_vars(regional.registry, regional.norms, host)


# ------------------------------------------------------------------ real ansible-inventory
@pytest.fixture(scope="module")
def profile_12(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("profile") / f"region-{REGION}.yaml"
    path.write_text(f'name: test-region-{REGION}\nregion: "{REGION}"\n', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def regional(profile_12):
    """The generated fleet of region 12, as the script will load it."""
    return load_project(profile_path=profile_12, root=ROOT)


@pytest.fixture()
def ansible_env(tmp_path: Path, profile_12: Path) -> dict:
    """Environment isolating Ansible from the machine's config, with the venv first on PATH."""
    assert ANSIBLE_INVENTORY.exists(), f"{ANSIBLE_INVENTORY} is missing: run scripts/setup (ansible-core is a dependency)"
    (tmp_path / "ansible.cfg").write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "CTFLEET_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
               ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_NOCOLOR="1", CTFLEET_PROFILE=str(profile_12))
    return env


def ansible_inventory(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(SCRIPT), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.component
def test_ansible_inventory_graph_shows_the_groups(ansible_env, regional):
    run = ansible_inventory(ansible_env, "--graph")
    assert run.returncode == 0, run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    graph = run.stdout
    ct = next(c for c in regional.registry.cts.values() if c.level == Level.COMMUNE)
    for group in (f"region_{REGION}", group_name("province", ct.province_code), group_name("ct", ct.code),
                  norms_group_name(ct, regional.norms.link_of(ct)), f"segment_{ct.segment.value}", f"lot_{ct.lot}", "role_router", "role_server",
                  "role_workstation", "tier_national", "tier_sdr"):
        assert f"@{group}:" in graph, group
    assert "@region_01:" not in graph  # the profile's region scope holds
    hosts = {line.split("--")[-1] for line in graph.splitlines() if "--" in line and "@" not in line}
    assert hosts == set(regional.registry.devices)


@pytest.mark.component
@pytest.mark.parametrize("segment", [Segment.COMMUNE_UNDER_15K, Segment.COMMUNE_100K_250K])
def test_ansible_inventory_host_shows_resolved_norms(ansible_env, regional, segment):
    ct = commune_of(regional.registry, segment)
    server = next(d for d in regional.registry.devices_of(ct.code) if d.role == Role.SERVER)
    run = ansible_inventory(ansible_env, "--host", server.hostname)
    assert run.returncode == 0, run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    got = json.loads(run.stdout)
    values, not_applicable = expected_norms(regional.norms, ct)
    assert got["ctfleet_norms"] == values
    assert got["ctfleet_norms_not_applicable"] == not_applicable
    assert (got["ctfleet_ct"], got["ctfleet_segment"], got["ctfleet_lot"]) == (ct.code, segment.value, ct.lot)
    assert got["ansible_host"] == str(server.mgmt_address)


@pytest.mark.component
def test_ansible_merges_a_per_ct_override_over_its_segment(ansible_env, regional, data_copy):
    """The design's risk: Ansible must let the CT group's norms beat the shared norms group."""
    small = sorted((c for c in regional.registry.cts.values() if c.segment == Segment.COMMUNE_UNDER_15K and c.lot == 3),
                   key=lambda c: c.code)
    overridden, sibling = small[0], small[1]
    (data_copy / "standards" / "norms" / "ct" / f"{overridden.code}.yaml").write_text(
        "description: test override\nvalues:\n  SYS-2: 7\nnot_applicable: [WS-4]\n", encoding="utf-8")
    env = dict(ansible_env, CTFLEET_ROOT=str(data_copy))
    for ct, sys2, ws4_applies in ((overridden, 7, False), (sibling, regional.norms.value(sibling, "SYS-2"), True)):
        host = next(d.hostname for d in regional.registry.devices_of(ct.code) if d.role == Role.WORKSTATION)
        run = ansible_inventory(env, "--host", host)
        assert run.returncode == 0, run.stderr
        got = json.loads(run.stdout)
        assert got["ctfleet_norms"]["SYS-2"] == sys2, ct.code
        assert ("WS-4" in got["ctfleet_norms"]) is ws4_applies
        assert ("WS-4" in got["ctfleet_norms_not_applicable"]) is not ws4_applies


@pytest.mark.component
def test_script_runs_without_the_venv_on_path(ansible_env, regional):
    """Ansible runs the script directly: with a system python3 first on PATH it re-executes with the venv."""
    python3 = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python3 is None:
        pytest.fail("no python3 on /usr/local/bin:/usr/bin:/bin to run the script the way a bare machine would")
    env = dict(ansible_env, PATH="/usr/local/bin:/usr/bin:/bin")
    host = next(iter(sorted(regional.registry.devices)))
    run = subprocess.run([str(SCRIPT), "--host", host], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["ctfleet_ct"] == regional.registry.sites[regional.registry.devices[host].site_code].ct_code
    assert set(got["ctfleet_norm_sources"]) == set(regional.norms.controls)


@pytest.mark.component
def test_script_errors_go_to_stderr_with_status_1(ansible_env, tmp_path):
    run = subprocess.run([str(SCRIPT), "--host", "no-such-host"], env=ansible_env, capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (1, "")
    assert "unknown host 'no-such-host'" in run.stderr and "Traceback" not in run.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text('region: "99"\n', encoding="utf-8")
    env = dict(ansible_env, CTFLEET_PROFILE=str(bad))
    run = subprocess.run([str(SCRIPT), "--list"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "unknown region '99'" in run.stderr and "Traceback" not in run.stderr
    run = ansible_inventory(env, "--list")
    assert run.returncode != 0 and "unknown region '99'" in run.stderr
