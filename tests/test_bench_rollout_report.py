"""bench/bench_rollout.py's report: the table and the ratios, including rows whose first
converge ran with another configuration (``--converge-with``), which give a re-run ratio only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bench_rollout", ROOT / "bench" / "bench_rollout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(config, first_config, first_s, rerun_s, mb=0.5):
    return {"link": "vsat", "config": config, "first_config": first_config, "hosts": 5,
            "first": {"wall_s": first_s, "MB_per_host": 9.8, "sdr_debs": 65, "dup": 0},
            "rerun": {"wall_s": rerun_s, "MB_per_host": mb, "changed": 0, "sdr_debs": 0, "dup": 0}}


def test_a_row_converged_by_another_configuration_gives_a_rerun_ratio_only():
    b = _bench()
    rows = [_row("default", "default", 590.0, 100.0), _row("stock", "default", 600.0, 400.0, mb=20.0)]
    assert b.ratios(rows, ["vsat"]) == [
        "vsat: default / stock wall time: re-run 0.25 (stock's fleet converged by default: no first-run ratio); "
        "MB/host re-run 0.5 vs 20.0"]
    table = b.table(rows)
    assert "| vsat | stock | 600.0 (by default, not stock) | 400.0 |" in table[3], table[3]
    assert "| vsat | default | 590.0 | 100.0 |" in table[2], table[2]


def test_rows_converged_by_their_own_configuration_give_both_ratios():
    b = _bench()
    rows = [_row("default", "default", 300.0, 100.0), _row("stock", "stock", 1200.0, 800.0, mb=20.0)]
    assert b.ratios(rows, ["vsat"]) == ["vsat: default / stock wall time: first 0.25, re-run 0.12; MB/host re-run 0.5 vs 20.0"]


def test_a_first_run_stopped_at_the_limit_bounds_the_ratio_and_the_rerun_is_measured():
    b = _bench()
    stock = _row("stock", "stock", 1800.0, 900.0, mb=8.0)
    stock["first"]["stopped_at_limit"] = 1800.0
    stock["finish"] = {"wall_s": 420.0, "config": "default", "changed": 40}
    rows = [_row("default", "default", 540.0, 112.5), stock]
    assert b.ratios(rows, ["vsat"]) == [
        "vsat: default / stock wall time: first < 0.30 (stock stopped at the limit after 1800.0 s, unfinished), "
        "re-run 0.12 (stock's fleet finished by default); MB/host re-run 0.5 vs 8.0"]
    assert "| vsat | stock | > 1800.0 (stopped at the limit, unfinished); finished by default in 420.0 | 900.0 |" in b.table(rows)[3]


def test_the_limit_stops_a_real_run_with_ansible_runners_job_timeout(tmp_path):
    """A local playbook that would sleep 60 s, run through the bench's limited run_fn with a 3 s
    limit: ansible-runner stops it and reports "timeout" (what measure() reads as stopped_at_limit)."""
    import sys
    import time

    b = _bench()
    assert b.limited_run(None) == {}
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "sleep.yml").write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  tasks:\n    - ansible.builtin.command: sleep 60\n      changed_when: false\n")
    t0 = time.monotonic()
    r = b.limited_run(3)["run_fn"](private_data_dir=str(tmp_path), project_dir=str(tmp_path / "project"),
                                   playbook="sleep.yml", inventory="localhost,", quiet=True,
                                   envvars={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert r.status == "timeout", r.status
    assert time.monotonic() - t0 < 30


def test_stopping_a_rows_leftovers_spares_the_fleets_own_services(tmp_path):
    """After a run stopped at --first-limit the row goes on with the same fleet: only processes
    naming the row's inventory (ansible-playbook, mitogen's multiplexer) are stopped, not the link
    relay or the SDR cache, which name the row's state directory."""
    import subprocess
    import sys

    b = _bench()
    code = "import time; time.sleep(60)"
    ansible = subprocess.Popen([sys.executable, "-c", code, "-i", str(tmp_path / "inventory.json")])
    relay = subprocess.Popen([sys.executable, "-c", code, "--socket", str(tmp_path / "state" / "relay.sock")])
    try:
        b.stop_leftovers(tmp_path)
        assert ansible.wait(timeout=10) == -9
        assert relay.poll() is None
    finally:
        for p in (ansible, relay):
            p.kill()
            p.wait()
