"""The ``ctfleet`` command: parses arguments, calls one function of an edge, prints.

May import: every edge and the shared layer; the lab wing only from the ``demo`` command.
Holds no domain rule (counts, totals and checks belong to the core or the edge it calls).
"""
