"""Reports computed from the registry, the norms and the results store: the KPI tables,
the HTML/CSV/JSON programme report (:mod:`~ctfleet.reports.programme_report`), Grafana dashboards.

An edge. May import: the core and the shared layer. It reads Prometheus over HTTP and
never imports the monitors (the simulated feed for its tests is ``ctfleet.lab.report_feed``).
"""
