"""The ``ctfleet`` command."""
