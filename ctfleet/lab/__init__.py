"""The lab wing: simulators, labs, mocks and demo harnesses — never part of a deployment.

Holds the simulated SNMP fleet (:mod:`~ctfleet.lab.simfleet`), the monitoring demo
(:mod:`~ctfleet.lab.monitoring_demo`) and the registry-only demo
(:mod:`~ctfleet.lab.registry_demo`), the report's simulated Prometheus feed
(:mod:`~ctfleet.lab.report_feed`), the FRR router lab in network namespaces
(:mod:`~ctfleet.lab.frr_lab`, :mod:`~ctfleet.lab.router_fleet`), napalm's mock driver
wiring (:mod:`~ctfleet.lab.napalm_mock`), Pulumi mock runs (:mod:`~ctfleet.lab.pulumi_mocks`),
the booted test hosts (:mod:`~ctfleet.lab.testhosts`) and process helpers for the real
components the labs start (:mod:`~ctfleet.lab.procs`: Prometheus, Alertmanager, snmpd ...).

May import: anything in the product. Imported by: tests, ``bench/`` and the ``ctfleet demo``
command only (an import-linter contract in ``pyproject.toml`` enforces it). Anything shown
to a person from here is labelled as simulated.
"""
