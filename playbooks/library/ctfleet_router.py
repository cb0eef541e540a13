#!/usr/bin/python
"""Ansible module: ctfleet's router operations (backup, diff, audit, push, restore) on the play's routers.

It calls the same code as ``ctfleet routers ...`` (:mod:`ctfleet.routers.ops`): one
call runs the whole selection with ctfleet's bounded parallel runner, makes one backup
commit per run and writes the control results to the results store. Run it once per
play on the controller (``run_once``, ``delegate_to: localhost``) with the play's hosts.

It runs as the action plugin of the same name (``playbooks/action_plugins/ctfleet_router.py``,
which calls :func:`run_params` here), inside Ansible's controller process: as a module,
AnsiballZ's payload shadows the ``ansible`` package, and a ``vault:`` login (ansible-core's
VaultLib) then broke the module's own result encoding with a traceback.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: ctfleet_router
short_description: Backup, diff, audit, push or restore routers from the ctfleet norms
description:
  - Renders each router's intended configuration from the registry and its CT's norms,
    then backs up (git, secrets masked), diffs, audits (pass/fail/unknown per control,
    written to the results store) or pushes it with the revert armed on the router.
  - Runs on the controller, once for all the play's routers (bounded, in parallel).
options:
  action: {type: str, required: true, choices: [backup, diff, audit, push, restore]}
  hostnames: {type: list, elements: str, required: true, description: Router hostnames (inventory names).}
  profile: {type: path, description: ctfleet profile (default CTFLEET_PROFILE or the project's ctfleet.yaml).}
  project_root: {type: path, description: ctfleet project root (default CTFLEET_ROOT or the installed package's).}
  settings: {type: path, description: Router settings YAML (default CTFLEET_ROUTER_SETTINGS).}
  backup_repo: {type: path, description: Backup git repository, outside the project.}
  revert_after: {type: int, description: Seconds before an unconfirmed push reverts by itself.}
  concurrency: {type: int, description: Routers at once.}
  allow_disruptive: {type: bool, default: false, description: Also push disruptive controls (RTR-5).}
  rev: {type: str, description: "restore: the backup revision (default: each router's latest backup)."}
notes:
  - In check mode, push and restore only diff.
"""

EXAMPLES = r"""
- name: RTR | AUDIT | the play's routers
  ctfleet_router:
    action: audit
    hostnames: "{{ ansible_play_hosts }}"
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
outcomes:
  description: Per router, what happened.
  returned: always
  type: dict
  sample: {"r-01-511-01-0": {"status": "changed", "ct": "01.511.01.0", "summary": "pushed RTR-1, RTR-4 ...", "ok": true}}
counts: {description: Routers per status., returned: always, type: dict}
commit: {description: The backup commit of this run, if any., returned: when action is backup, type: str}
"""

import os
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


ARGUMENT_SPEC = dict(
    action=dict(type="str", required=True, choices=["backup", "diff", "audit", "push", "restore"]),
    hostnames=dict(type="list", elements="str", required=True),
    profile=dict(type="path"),
    project_root=dict(type="path"),
    settings=dict(type="path"),
    backup_repo=dict(type="path"),
    revert_after=dict(type="int"),
    concurrency=dict(type="int"),
    allow_disruptive=dict(type="bool", default=False),
    rev=dict(type="str"),
)


def run_params(p: dict, check_mode: bool) -> dict:
    """The task's result for validated parameters ``p``; raises :class:`~ctfleet.core.errors.CtfleetError`."""
    from ctfleet.project import load_project
    from ctfleet.routers.ops import RouterOps, select_routers

    root_dir = p.get("project_root") or os.environ.get("CTFLEET_ROOT")
    root = Path(root_dir) if root_dir else None
    project = load_project(p["profile"], root=root)
    ops = RouterOps.from_project(project, p["settings"], p["backup_repo"])  # the same wiring as `ctfleet routers`
    jobs, bad = select_routers(project.registry, project.norms, hostnames=p["hostnames"])
    unknown = sorted(set(p["hostnames"]) - {j.device.hostname for j in jobs} - {o.hostname for o in bad})
    action = "diff" if (check_mode and p["action"] in ("push", "restore")) else p["action"]
    fleet = select_routers(project.registry, project.norms)[0] if action == "backup" else None
    report = ops.run(action, jobs, concurrency=p["concurrency"], revert_after=p["revert_after"], pre_failed=bad,
                     allow_disruptive=p["allow_disruptive"], rev=p["rev"], fleet=fleet)
    outcomes = {o.hostname: {"status": o.status, "ct": o.ct, "summary": o.summary, "ok": o.ok, "error_kind": o.error_kind,
                             **({"diff": o.data["diff"]} if o.data.get("diff") else {})} for o in report.outcomes}
    for h in unknown:
        outcomes[h] = {"status": "failed", "ct": None, "summary": f"{h} is not a router of this profile's registry",
                       "ok": False, "error_kind": "platform"}
    changed = bool(report.commit) or any(o.status in ("changed", "reverted") for o in report.outcomes)
    return dict(changed=changed, action=action, outcomes=outcomes, counts=report.counts(), commit=report.commit,
                results_written=report.results_written)


def main() -> None:  # as a plain module (no action plugin found): the same work; vault: logins need the plugin
    from ctfleet.core.errors import CtfleetError

    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run_params(module.params, module.check_mode)
    except CtfleetError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
