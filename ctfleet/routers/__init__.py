"""Routers: intended configuration from the norms, backup with history, diff, audit and
safe push over SSH, many routers at once.

Pure: :mod:`~ctfleet.routers.platforms` (the platform registry), :mod:`~ctfleet.routers.render`
(Jinja2 templates in ``templates/``), :mod:`~ctfleet.routers.configtext` (parse, mask,
plan), :mod:`~ctfleet.routers.audit` (observe and judge), :mod:`~ctfleet.routers.settings`.
Edges: :mod:`~ctfleet.routers.drivers` (napalm, netmiko), :mod:`~ctfleet.routers.backups`
(git), :mod:`~ctfleet.routers.fanout` (bounded threads), :mod:`~ctfleet.routers.ops` (the
operations). The FRR lab for tests and the walk-through lives in :mod:`ctfleet.lab.frr_lab`. On FRR
routers, ``host/ctfleet-guard`` is the on-router revert timer. See README.md here.

An edge. May import: the core and the shared layer. Never another edge nor the lab wing.
"""
