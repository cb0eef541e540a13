"""Routers, pure parts: configuration text, secrets masking, change plans, rendering from
the norms, the platform registry, the audit's judging and the bounded runner."""

from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path

import pytest

from ctfleet.core.compliance import Status
from ctfleet.core.errors import InputError
from ctfleet.core.models import Device, Platform, Role
from ctfleet.routers import configtext as ct
from ctfleet.routers.audit import audit_router
from ctfleet.routers.platforms import PLATFORMS, platform_spec
from ctfleet.routers.render import SnmpUser, render_intended, router_norms, router_vars
from ctfleet.routers.fanout import Outcome, run_bounded
from ctfleet.routers.settings import RouterSettings, check_backup_path, load_settings
from ctfleet.core.secrets import Secret

CT_CODE = "01.511.01.0"


def _vars(p, platform: Platform, settings: RouterSettings | None = None, snmp=None, ct_code: str = CT_CODE):
    c = p.registry.cts[ct_code]
    d = Device(hostname="r-" + c.slug, site_code="S-" + c.slug, role=Role.ROUTER, platform=platform,
               mgmt_address=ipaddress.ip_address("127.0.0.1"))
    return router_vars(d, c, None, p.norms.resolve(c), settings or RouterSettings(), snmp)


# ------------------------------------------------------------------ configuration text
def test_parse_paths_banners_and_frr_exit() -> None:
    text = ("Building configuration...\n\nCurrent configuration : 120 bytes\n!\nhostname r1\n!\n"
            "banner login ^C\nline one\nline two\n^C\nline vty 0 4\n transport input ssh\n!\n"
            "line vty\n access-class X\nexit\nend\n")
    paths = ct.ordered_paths(ct.parse(text))
    assert paths[0] == ("hostname r1",)
    assert paths[1] == ("banner login ^C\nline one\nline two\n^C",)  # one logical line
    assert ("line vty 0 4", "transport input ssh") in paths
    assert ("line vty", "access-class X") in paths and ("exit",) not in paths


def test_mask_hides_every_kind_of_secret_and_known_values() -> None:
    text = ("snmp-server community Public2019 RO\nusername a privilege 15 secret 9 $9$abc\n"
            "snmp-server user noc G v3 auth sha AK-1 priv aes 128 PK-2\nneighbor 10.0.0.1 password Bgp-9\n"
            "description contains hunter2-lab\n")
    masked = ct.mask(text, known=["hunter2-lab"])
    for leaked in ("Public2019", "$9$abc", "AK-1", "PK-2", "Bgp-9", "hunter2-lab"):
        assert leaked not in masked
    assert "snmp-server user noc G v3 auth sha <secret> priv aes 128 <secret>" in masked
    assert ct.mask(masked) == masked  # idempotent: a backup masked twice does not change


def test_stable_drops_volatile_lines() -> None:
    a = "Building configuration...\n\nCurrent configuration : 10 bytes\n! Last configuration change at 1 by x\nhostname r\n"
    b = "Building configuration...\n\nCurrent configuration : 99 bytes\n! Last configuration change at 2 by y\nhostname r\n"
    assert ct.stable(a) == ct.stable(b) == "hostname r\n"
    assert ct.last_change(a) == ("1", "x")


def test_plan_missing_stray_and_ordered_block_rewrite() -> None:
    running = ct.parse("ntp server 1.1.1.1\nip access-list standard CTFLEET-MGMT\n deny   any log\n permit 10.0.0.0 0.0.0.255\n"
                       "line vty 0 4\n transport input telnet ssh\n")
    from ctfleet.routers.configtext import Section

    want = {"RTR-3": Section("RTR-3", (("ntp server 10.1.255.123",),)),
            "RTR-1": Section("RTR-1", (("line vty 0 4",), ("line vty 0 4", "transport input ssh"))),
            "RTR-5": Section("RTR-5", (("ip access-list standard CTFLEET-MGMT",),
                                       ("ip access-list standard CTFLEET-MGMT", "permit 10.0.0.0 0.0.0.255"),
                                       ("ip access-list standard CTFLEET-MGMT", "deny   any log")))}
    order = [p for s in want.values() for p in s.lines]
    spec = PLATFORMS[Platform.CISCO_IOS]
    p = ct.plan(running, want, spec.owned, spec.ordered_blocks, order)
    assert p.delta("RTR-3").stray == (("ntp server 1.1.1.1",),)
    assert p.delta("RTR-1").stray == (("line vty 0 4", "transport input telnet ssh"),)
    assert p.delta("RTR-5").in_norm  # same entries ...
    assert p.replace_blocks == (("ip access-list standard CTFLEET-MGMT",),)  # ... in the wrong order: rewritten whole
    cand = ct.candidate(running, p)
    assert "ip access-list standard CTFLEET-MGMT\n permit 10.0.0.0 0.0.0.255\n deny   any log" in cand
    assert "ntp server 1.1.1.1" not in cand and "transport input telnet ssh" not in cand


def test_commands_and_undo_round_trip() -> None:
    running = ct.parse("log stdout informational\nline vty\nexit\n")
    from ctfleet.routers.configtext import Plan

    change = Plan((), add=(("log syslog informational",), ("line vty",), ("line vty", "access-class NO")),
                  remove=(("log stdout informational",),))
    assert ct.commands(change) == ["no log stdout informational", "log syslog informational", "line vty", "access-class NO", "exit"]
    back = ct.undo(running, change)
    assert ct.commands(back) == ["no log syslog informational", "line vty", "no access-class NO", "exit", "log stdout informational"]


# ------------------------------------------------------------------ platforms and rendering
def test_unknown_platform_names_the_supported_ones() -> None:
    with pytest.raises(InputError) as e:
        platform_spec(Platform.MIKROTIK, where="device r-x")
    assert "no router support for 'mikrotik_routeros'" in str(e.value) and "cisco_ios, frr" in str(e.value)
    with pytest.raises(InputError, match="one of cisco_ios, frr"):
        platform_spec("junos")


def test_every_platform_has_a_template_and_an_observer_per_router_control(registry_only) -> None:
    router_controls = {c.id for c in registry_only.norms.controls.values() if "router" in c.applies_to}
    for platform, spec in PLATFORMS.items():
        assert (Path(__file__).resolve().parents[1] / "ctfleet/routers/templates" / spec.template).is_file()
        assert router_controls <= set(spec.observers), f"{platform}: controls without an observer"
        assert set(spec.owned) - {"base"} <= router_controls


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_render_display_masks_device_reveals(registry_only, platform) -> None:
    snmp = SnmpUser("noc-01", Secret("auth-VERY-secret-1"), Secret("priv-VERY-secret-2"))
    shown = render_intended(PLATFORMS[platform], _vars(registry_only, platform, snmp=snmp))
    device = render_intended(PLATFORMS[platform], _vars(registry_only, platform, snmp=snmp), reveal=True)
    assert "VERY-secret" not in shown.text
    if platform == Platform.CISCO_IOS:
        assert "auth sha auth-VERY-secret-1 priv aes 128 priv-VERY-secret-2" in device.text
        assert shown.sections["RTR-2"].write_only and shown.sections["RTR-3"].lines == (
            ("ntp server 10.1.255.123",), ("ntp server 10.1.255.124",))
    else:
        assert set(shown.sections) == {"RTR-1", "RTR-4"}


def test_render_is_pure_and_deterministic(registry_only) -> None:
    a = render_intended(PLATFORMS[Platform.CISCO_IOS], _vars(registry_only, Platform.CISCO_IOS))
    b = render_intended(PLATFORMS[Platform.CISCO_IOS], _vars(registry_only, Platform.CISCO_IOS))
    assert a.text == b.text and a.sections == b.sections


def test_template_asking_for_a_missing_norm_names_template_line_and_valid_ids(registry_only, tmp_path) -> None:
    (tmp_path / "cisco_ios.j2").write_text('{% from "_ctfleet.j2" import control %}\nhostname {{ hostname }}\n'
                                           'ntp maxassoc {{ norm("RTR-99") }}\n')
    with pytest.raises(InputError) as e:
        render_intended(PLATFORMS[Platform.CISCO_IOS], _vars(registry_only, Platform.CISCO_IOS), template_dir=tmp_path)
    msg = str(e.value)
    assert "cisco_ios.j2:3" in msg and "norm 'RTR-99'" in msg and "RTR-1" in msg and "wants('ID')" in msg


def test_template_undefined_variable_and_too_few_ntp_servers(registry_only, tmp_path) -> None:
    (tmp_path / "cisco_ios.j2").write_text("hostname {{ hostname }}\nlogging host {{ syslog_colector }}\n")
    with pytest.raises(InputError, match=r"cisco_ios.j2:2: .*'syslog_colector' is undefined \(valid: variables .*syslog_collector"):
        render_intended(PLATFORMS[Platform.CISCO_IOS], _vars(registry_only, Platform.CISCO_IOS), template_dir=tmp_path)
    with pytest.raises(InputError, match=r"router settings: ntp_servers: RTR-3 asks CT .* at least 2 NTP servers; the settings list 1"):
        render_intended(PLATFORMS[Platform.CISCO_IOS],
                        _vars(registry_only, Platform.CISCO_IOS, RouterSettings(ntp_servers=["10.{region_int}.255.123"])))


def test_push_rendering_without_snmp_credentials_is_a_clear_error(registry_only) -> None:
    with pytest.raises(InputError, match="pushing RTR-2 needs the router's SNMPv3 user"):
        render_intended(PLATFORMS[Platform.CISCO_IOS], _vars(registry_only, Platform.CISCO_IOS), reveal=True)


def test_settings_strict_and_backup_repo_outside_project(tmp_path, root) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("login: hunter2\n")
    with pytest.raises(InputError) as e:
        load_settings(bad)
    assert "hunter2" not in str(e.value) and "not a credentials reference" in str(e.value)
    bad.write_text("ntp_server: [1.2.3.4]\n")
    with pytest.raises(InputError, match="ntp_server"):
        load_settings(bad)
    with pytest.raises(InputError, match="must live outside the project"):
        check_backup_path(root / "var" / "backups", root)


# ------------------------------------------------------------------ audit judging
def test_audit_unknown_is_never_pass(registry_only) -> None:
    spec = PLATFORMS[Platform.FRR]
    v = _vars(registry_only, Platform.FRR)
    r = render_intended(spec, v)
    running = ct.parse("frr version 8.4.4\nlog syslog informational\n")
    p = ct.plan(running, r.sections, spec.owned, spec.ordered_blocks, r.order)
    res = {x.control: x for x in audit_router(spec, CT_CODE, v.device.hostname, v.norms, running, p, {}, None)}
    assert res["RTR-4"].status == Status.UNKNOWN  # FRR's part is there; forwarding is the host's
    assert res["RTR-1"].status == Status.FAIL
    assert res["RTR-7"].status == Status.UNKNOWN  # never backed up
    assert all(x.source.value == "router_audit" for x in res.values())
    assert set(res) == set(router_norms(registry_only.norms.resolve(registry_only.registry.cts[CT_CODE])))


# ------------------------------------------------------------------ runner
def test_runner_bounds_concurrency_and_a_stuck_router_does_not_stall_the_run() -> None:
    live = {"now": 0, "max": 0}
    lock = threading.Lock()

    def work(job):
        with lock:
            live["now"] += 1
            live["max"] = max(live["max"], live["now"])
        try:
            time.sleep(30 if job == "stuck" else 0.05)
        finally:
            with lock:
                live["now"] -= 1
        return Outcome(job, "ct", "ok", "done")

    jobs = ["stuck"] + [f"r{i}" for i in range(12)]
    t = time.monotonic()
    out = run_bounded(jobs, work, concurrency=3, timeout_for=lambda j: 1.0, name_of=lambda j: (j, "ct"))
    assert time.monotonic() - t < 5
    assert [o.hostname for o in out] == jobs
    assert out[0].status == "timeout" and all(o.status == "ok" for o in out[1:])
    assert live["max"] <= 3


def test_runner_turns_a_crash_into_that_router_s_failure() -> None:
    def work(job):
        if job == "bad":
            raise RuntimeError("boom")
        return Outcome(job, "ct", "ok", "fine")

    out = run_bounded(["a", "bad", "c"], work, concurrency=2, timeout_for=lambda j: 5, name_of=lambda j: (j, "ct"))
    assert [o.status for o in out] == ["ok", "failed", "ok"] and "boom" in out[1].summary


def test_fleet_routers_of_unsupported_platforms_fail_alone_naming_the_supported(project) -> None:
    from ctfleet.routers.ops import select_routers

    routers = [d for d in project.registry.devices.values() if d.role == Role.ROUTER]
    mikrotik = next(d for d in routers if d.platform == Platform.MIKROTIK)
    ios = next(d for d in routers if d.platform == Platform.CISCO_IOS)
    cts = [project.registry.sites[d.site_code].ct_code for d in (mikrotik, ios)]
    jobs, bad = select_routers(project.registry, project.norms, cts=cts)
    assert [j.device.hostname for j in jobs] == [ios.hostname]
    assert [(o.hostname, o.error_kind) for o in bad] == [(mikrotik.hostname, "platform")]
    assert "no router support for 'mikrotik_routeros' (valid: one of cisco_ios, frr)" in bad[0].summary
