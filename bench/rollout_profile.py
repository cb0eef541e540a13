#!/usr/bin/env python3
"""Where a rollout's wall time goes, from ansible-runner's job events (one run's artifacts dir).

    .venv/bin/python bench/rollout_profile.py RUN_ARTIFACTS_DIR [--rtt-ms 675]

Per host: tasks that reached it (ok / changed / failed; skipped ones cost no round trip),
the sum of their durations; per module (``resolved_action``): count, total and median
duration, and that median in round trips of ``--rtt-ms``; the slowest tasks. Controller-only
actions (set_fact, assert, debug, ...) cost no round trip.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

LOCAL = {"ansible.builtin.set_fact", "ansible.builtin.assert", "ansible.builtin.debug", "ansible.builtin.fail",
         "ansible.builtin.include_tasks", "ansible.builtin.include_role", "ansible.builtin.meta", "ansible.builtin.add_host",
         "ansible.builtin.group_by", "ansible.builtin.include_vars"}
DONE = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_unreachable": "unreachable",
        "runner_on_skipped": "skipped"}


def load(artifacts: Path) -> list[dict]:
    evs = []
    for f in (artifacts / "job_events").glob("*.json"):
        try:
            evs.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a partly copied event
    return sorted(evs, key=lambda e: e.get("counter", 0))


def profile(evs: list[dict], rtt_ms: float) -> str:
    per_host: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    per_action: dict[str, list[float]] = defaultdict(list)
    tasks: list[tuple[float, str, str]] = []
    for e in evs:
        kind = DONE.get(e.get("event"))
        d = e.get("event_data", {})
        if not kind or "duration" not in d:
            continue
        h = per_host[d.get("host", "?")]
        changed = kind == "ok" and (d.get("res") or {}).get("changed")
        h["changed" if changed else kind] += 1
        if kind == "skipped":
            continue
        dur = float(d["duration"])
        h["seconds"] += dur
        action = d.get("resolved_action") or d.get("task_action") or "?"
        per_action[action].append(dur)
        tasks.append((dur, d.get("host", "?"), d.get("task", "?")))
    spans: dict[str, list[str]] = {}
    for e in evs:
        play, created = e.get("event_data", {}).get("play"), e.get("created")
        if play and created:
            spans.setdefault(play, [created, created])[1] = created
    lines = ["| play (in order) | wall s |", "|---|---:|"]
    for play, (a, b) in spans.items():
        lines.append(f"| {play} | {(datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds():.0f} |")
    lines += ["", "| host | ok | changed | skipped | failed | sum of task durations (s) |", "|---|---:|---:|---:|---:|---:|"]
    for host, h in sorted(per_host.items()):
        lines.append(f"| {host} | {int(h['ok'])} | {int(h['changed'])} | {int(h['skipped'])} | "
                     f"{int(h['failed'] + h['unreachable'])} | {h['seconds']:.0f} |")
    lines += ["", f"| module | runs (all hosts) | total s | median s | median in RTTs of {rtt_ms:g} ms |", "|---|---:|---:|---:|---:|"]
    for action, durs in sorted(per_action.items(), key=lambda kv: -sum(kv[1]))[:15]:
        med = statistics.median(durs)
        rtts = "local" if action in LOCAL else f"{med * 1000 / rtt_ms:.1f}"
        lines.append(f"| {action} | {len(durs)} | {sum(durs):.0f} | {med:.2f} | {rtts} |")
    lines += ["", "slowest tasks:"] + [f"  {d:7.1f} s  {h}  {t}" for d, h, t in sorted(tasks, reverse=True)[:10]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("artifacts", type=Path)
    ap.add_argument("--rtt-ms", type=float, default=675.0)
    args = ap.parse_args(argv)
    if not (args.artifacts / "job_events").is_dir():
        print(f"{args.artifacts}: no job_events directory (expected an ansible-runner artifacts dir)", file=sys.stderr)
        return 2
    try:
        print(profile(load(args.artifacts), args.rtt_ms))
    except BrokenPipeError:  # | head
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
