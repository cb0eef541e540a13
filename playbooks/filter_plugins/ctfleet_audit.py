"""Filters for the ctfleet roles' audit mode.

``ctfleet_judge`` judges observations against the norms exactly as
``ctfleet.core.compliance.judge`` does (the test suite checks the two agree on every
operator): it is copied, not imported, because under ``ansible-pull`` the filter runs on
the commune's host, where ctfleet is not installed.

``ctfleet_textfile`` renders a report for node_exporter's textfile collector::

    # HELP ctfleet_audit_control_status 1 for the status of each control at the last audit.
    # TYPE ctfleet_audit_control_status gauge
    ctfleet_audit_control_status{control="SYS-3",severity="high",status="pass"} 1
    ctfleet_audit_control_status{control="SYS-3",severity="high",status="fail"} 0
    ...
    ctfleet_audit_last_run_timestamp_seconds 1.7955e+09
"""

from __future__ import annotations

import calendar
import re
import time

STATUSES = ("pass", "fail", "unknown", "waived")


def _judge(compare, expected, observed):
    if observed is None:
        return "unknown"
    try:
        if compare == "min":
            ok = observed >= expected
        elif compare == "max":
            ok = observed <= expected
        elif compare == "equal":
            ok = observed == expected
        elif compare == "subset":
            ok = set(map(str, observed)) <= set(map(str, expected))
        elif compare == "superset":
            ok = set(map(str, observed)) >= set(map(str, expected))
        elif compare == "member":
            ok = str(observed) in set(map(str, expected))
        else:
            return "unknown"
    except TypeError:
        return "unknown"
    return "pass" if ok else "fail"


def ctfleet_judge(observed, controls, expected, enabled=None):
    """{control id: observation} -> {control id: result}, for this role's enabled controls.

    An observation is ``{"observed": value, "evidence": "..."}``, optionally with a
    ``status`` that overrides judging (``fail`` when a service is simply absent, ``unknown``
    when a container cannot show the thing at all)::

        {"SYS-5": {"status": "fail", "observed": 6, "expected": 4, "evidence": "sshd -T: maxauthtries 6",
                   "title": "...", "severity": "medium", "topic": "ssh"}}
    """
    out = {}
    for cid, obs in (observed or {}).items():
        if cid not in controls:
            continue  # another role's observation: that role judges it
        if enabled is not None and not _truthy(enabled.get(cid, True)):
            continue
        meta = controls[cid]
        want = expected.get(cid)
        status = obs.get("status") or _judge(meta["compare"], want, obs.get("observed"))
        out[cid] = {"status": status, "observed": obs.get("observed"), "expected": want,
                    "evidence": str(obs.get("evidence", "")), "title": meta["title"],
                    "severity": meta["severity"], "topic": meta["topic"]}
    return out


def _truthy(v):
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _label(v):
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def ctfleet_textfile(report):
    results = report.get("results") or {}
    lines = ["# HELP ctfleet_audit_control_status 1 for the status of each control at the last audit.",
             "# TYPE ctfleet_audit_control_status gauge"]
    for cid in sorted(results):
        r = results[cid]
        for st in STATUSES:
            lines.append('ctfleet_audit_control_status{control="%s",severity="%s",status="%s"} %d'
                         % (_label(cid), _label(r.get("severity", "")), st, 1 if r.get("status") == st else 0))
    try:
        ts = calendar.timegm(time.strptime(report.get("observed_at", ""), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        ts = time.time()
    lines += ["# HELP ctfleet_audit_last_run_timestamp_seconds When the last audit ran.",
              "# TYPE ctfleet_audit_last_run_timestamp_seconds gauge",
              "ctfleet_audit_last_run_timestamp_seconds %s" % float(ts)]
    return "\n".join(lines) + "\n"


def ctfleet_capture(text, pattern, default=""):
    """The first group of the first match of ``pattern`` (multi-line mode) in ``text``, else ``default``.

    ``"maxauthtries 6" | ctfleet_capture('^maxauthtries (\\d+)')`` -> ``"6"``
    """
    m = re.search(pattern, str(text or ""), re.MULTILINE)
    return m.group(1) if m else default


class FilterModule:
    def filters(self):
        return {"ctfleet_judge": ctfleet_judge, "ctfleet_textfile": ctfleet_textfile, "ctfleet_capture": ctfleet_capture}
