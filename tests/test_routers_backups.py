"""Router backups without a router: age encryption, the settings of the keys, the metrics
textfile (checked by promtool), re-injection of managed secrets, and the collector host's
systemd timer (checked by systemd-analyze, then broken to show the check bites)."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ctfleet.core.errors import InputError
from ctfleet.core.secrets import Secret
from ctfleet.routers.backups import BackupMetric, new_identity, seal, unseal, write_metrics
from ctfleet.routers.configtext import reinject
from ctfleet.routers.schedule import SERVICE, TIMER, backup_units, interval_hours
from ctfleet.routers.settings import load_settings


def test_sealed_copy_opens_only_with_its_identity() -> None:
    ident, recipient = new_identity()
    other, _ = new_identity()
    text = "hostname r1\npassword s3cr3t-value\n"
    armored = seal(text, [recipient])
    assert armored.startswith("-----BEGIN AGE ENCRYPTED FILE-----") and "s3cr3t" not in armored
    assert unseal(armored, Secret("# comment line\n" + ident.reveal() + "\n"), "x").reveal() == text
    with pytest.raises(InputError, match="cannot decrypt") as exc:
        unseal(armored, other, "repo abc123")
    assert other.reveal() not in str(exc.value)
    with pytest.raises(InputError, match="not an age identity"):
        unseal(armored, Secret("hunter2"), "x")


def test_settings_check_the_keys_and_never_echo_an_identity(tmp_path: Path) -> None:
    _, recipient = new_identity()
    ok = tmp_path / "ok.yaml"
    ok.write_text(f"backup_recipients: [{recipient}]\nbackup_identity: file:/etc/ctfleet/rb.agekey\n")
    assert load_settings(ok).backup_recipients == [recipient]
    bad = tmp_path / "bad.yaml"
    bad.write_text("backup_recipients: [age1notakey]\n")
    with pytest.raises(InputError, match="backup_recipients") as exc:
        load_settings(bad)
    assert "age1 followed by 58" in str(exc.value)
    leaked = tmp_path / "leak.yaml"
    leaked.write_text("login: env:CTFLEET_RTR_LOGIN_{region}\nbackup_identity: AGE-SECRET-KEY-1QQQQ\n")
    with pytest.raises(InputError) as exc:
        load_settings(leaked)
    assert "AGE-SECRET-KEY" not in str(exc.value) and "leak.yaml:2: backup_identity" in str(exc.value)


def test_metrics_textfile_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    labels = {"ct": "01.511.01.01", "region": "01", "province": "01.511", "segment": "commune_under_15k", "lot": "3",
              "link": "vsat", "device": "r-1", "role": "router", "platform": "frr"}
    at = datetime.now(timezone.utc) - timedelta(hours=3)
    path = write_metrics(tmp_path / "t" / "rb.prom", [BackupMetric(labels, at, 24.0),
                                                       BackupMetric({**labels, "device": "r-2"}, None, 24.0)])
    text = path.read_text()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'device="r-1",' in text and 'ctfleet_router_backup_max_age_seconds{' in text
    assert text.count("ctfleet_router_backup_last_success_timestamp_seconds{") == 1  # r-2 never succeeded: no timestamp
    from prometheus_client.parser import text_string_to_metric_families

    fams = {f.name: f for f in text_string_to_metric_families(text)}
    (last,) = fams["ctfleet_router_backup_last_success_timestamp_seconds"].samples
    assert last.labels == labels and abs(last.value - at.timestamp()) < 1
    assert [s.value for s in fams["ctfleet_router_backup_max_age_seconds"].samples] == [86400.0, 86400.0]


def test_reinject_takes_managed_secrets_from_the_current_rendering() -> None:
    device = "snmp-server user noc G v3 auth sha NEWAUTH1 priv aes 128 NEWPRIV1\nhostname r1"
    shown = "snmp-server user noc G v3 auth sha <secret> priv aes 128 <secret>\nhostname r1"
    backup = "hostname r1\nsnmp-server user noc G v3 auth sha OLDAUTH1 priv aes 128 OLDPRIV1\nenable secret 5 $1$keep$it\n"
    out = reinject(backup, device, shown)
    assert "NEWAUTH1" in out and "OLDAUTH1" not in out and "enable secret 5 $1$keep$it" in out
    masked_backup = "hostname r1\nsnmp-server user noc G v3 auth sha <secret> priv aes 128 <secret>\n"
    assert "<secret>" not in reinject(masked_backup, device, shown)


class _Job:
    def __init__(self, hours):
        from types import SimpleNamespace

        self.norms = {"RTR-7": SimpleNamespace(value=hours)} if hours else {}


def test_schedule_units_pass_systemd_analyze_and_the_check_bites(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian package systemd) is required"
    assert interval_hours([_Job(24), _Job(48)]) == 6 and interval_hours([_Job(2)]) == 1 and interval_hours([]) == 6
    units = backup_units([_Job(24)], settings_file="/etc/ctfleet/router-settings.yaml", command="/usr/bin/true")
    assert "OnCalendar=*-*-* 00/6:00:00" in units[TIMER] and "Persistent=true" in units[TIMER]
    assert "ExecStart=/usr/bin/true routers backup --settings /etc/ctfleet/router-settings.yaml" in units[SERVICE]
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    r = subprocess.run([analyze, "verify", str(tmp_path / SERVICE), str(tmp_path / TIMER)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cal = subprocess.run([analyze, "calendar", "--iterations", "2", "*-*-* 00/6:00:00"], capture_output=True, text=True)
    assert cal.returncode == 0 and "Next elapse" in cal.stdout
    # Broken on purpose: a relative command and a bad calendar are caught.
    (tmp_path / SERVICE).write_text(units[SERVICE].replace("ExecStart=/usr/bin/true", "ExecStart=no-such-ctfleet"))
    (tmp_path / TIMER).write_text(units[TIMER].replace("00/6:00:00", "00/6:99:00"))
    bad = subprocess.run([analyze, "verify", str(tmp_path / SERVICE), str(tmp_path / TIMER)], capture_output=True, text=True)
    assert bad.returncode != 0 and ("no-such-ctfleet" in bad.stderr or "OnCalendar" in bad.stderr), bad.stderr
    assert time.time() > 0
