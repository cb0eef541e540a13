"""Running real components (Prometheus, Alertmanager, agents) for the demo and the tests:
in the foreground of a child process, with their own data dirs, on loopback, always stopped."""
