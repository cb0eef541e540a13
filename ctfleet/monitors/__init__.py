"""Monitors: the SNMP and reachability collectors, the exporter, and the fast-path
SNMP codec they share.

``ber`` encodes and decodes the narrow set of SNMPv2c messages the collector uses and
``usm`` adds SNMPv3 USM (HMAC-SHA-96 authentication, AES-128-CFB privacy); both are
pure Python with no network I/O, checked against pysnmp, which stays the reference and
the fallback for anything outside that set.

An edge. May import: the core and the shared layer (project, results, edges). Never
another edge (stacks, routers, rollout, reports) nor the lab wing.
"""
