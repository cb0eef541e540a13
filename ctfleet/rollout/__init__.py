"""Rolling the playbooks out to communes, on ansible-runner.

    config.py     RolloutRequest / Tuning: what to run, validated (pure)
    command.py    build(): the Ansible invocation of a request (pure)
    events.py     RunState: ansible-runner's events folded per host (pure)
    audit.py      audit reports -> ControlResult rows; results store merge; queued-report ledger
    runner.py     run_rollout(): ansible-runner, artifacts, run records, retry (I/O edge)
    collect.py    collect_queued(): deliver pull-mode audits exactly once (I/O edge)
    progress.py   Rich progress per host and the summary table (display only)
    role_inputs.py role defaults / argument specs / task imports from the control catalogue

An edge. May import: the core and the shared layer; it runs the dynamic inventory
(ctfleet.ansible_inventory) as a program, never imports it. The booted test fleet is
``ctfleet.lab.testhosts``.
"""
