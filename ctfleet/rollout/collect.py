"""Delivering audit reports queued on hosts (pull mode), exactly once.

1. ``collect_audits.yml`` fetches ``/var/spool/ctfleet/audit/*.json`` from each host into
   ``var/rollout/inbox/<host>/``;
2. :func:`ctfleet.rollout.audit.ingest_inbox` merges the files the ledger has not seen
   into the results store, then records them in the ledger;
3. ``collect_ack.yml`` deletes on each host only the files the ledger holds.

A link that drops between 1 and 3 leaves the files on the host: the next collect fetches
them again and the ledger skips them. Nothing is deleted before the store has it.
"""

from __future__ import annotations

import shutil
from typing import Any, Callable

from ctfleet.results import ResultsStore
from ctfleet.rollout.audit import ingest_inbox
from ctfleet.rollout.config import RolloutPaths, RolloutRequest
from ctfleet.rollout.runner import _ansible_runner_run, run_rollout


def collect_queued(base: RolloutRequest, paths: RolloutPaths, run_fn: Callable[..., Any] = _ansible_runner_run,
                   forward: Callable[[str, list], Any] | None = None) -> dict[str, Any]:
    """Fetch, merge, acknowledge; with ``forward`` (the profile's results service), the newly
    merged results also go to the region as one batch ``pull-<fetch run id>``."""
    inbox = paths.runs / "inbox"
    fetch = base.model_copy(update={"playbook": "collect_audits.yml", "extravars": {**base.extravars, "ctfleet_inbox": str(inbox)}})
    fetched = run_rollout(fetch, paths, run_fn=run_fn)
    summary = ingest_inbox(inbox, ResultsStore(paths.results))
    sent = summary["new"] + summary["inventories"]  # results, then the inventory records (one batch)
    delivery = forward(f"pull-{fetched.run_id}", sent) if forward is not None and sent else None
    acks = {h: names for h, names in summary["acks"].items() if names}
    ack_ok = True
    if acks:
        ack = base.model_copy(update={"playbook": "collect_ack.yml", "extravars": {**base.extravars, "ctfleet_acks": acks}})
        acked = run_rollout(ack, paths, run_fn=run_fn)
        ack_ok = acked.exit_code == 0
        for host in acks:
            if host not in acked.failed_hosts:
                shutil.rmtree(inbox / host, ignore_errors=True)  # the host deleted them too
    return {"ok": fetched.exit_code == 0 and ack_ok, "fetched_from": sorted(h for h in fetched.state.hosts),
            "unreachable": fetched.failed_hosts, "merged_files": summary["merged"], "already_delivered": summary["skipped"],
            "results": summary["rows"], "delivery": delivery.as_dict() if delivery is not None else None}
