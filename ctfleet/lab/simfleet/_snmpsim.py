"""Run ``snmpsim-command-responder`` with its per-endpoint data selection working.

Why this wrapper exists: snmpsim selects a simulation data file per request from the
community (v1/v2c) or context name (v3), and -- through its command responders'
``handleMgmtOperation`` override -- also from the *transport endpoint* the request
arrived on (``data/<community-md5>/1.3.6.1.6.1.1.<N>.snmprec`` for v2c,
``data/1.3.6.1.6.1.1.<N>.snmprec`` for v3 with an empty context name). With pysnmp 7
(snake_case API) that override is never called: pysnmp now calls
``handle_management_operation``, and the override's helpers (``getExecutionContext``,
``getMibInstrum``) are gone too. Checked in snmpsim 1.2.2 with pysnmp 7.1: v2c falls
back to the community's file and SNMPv3 requests with an empty context name are
silently dropped, so one engine cannot serve many v3 devices; one engine per device
works but costs ~0.15 s each at start-up (4 minutes for the national fleet).

This module installs ``handle_management_operation`` on snmpsim's responder classes
with the same probing logic (snmpsim's own :func:`snmpsim.datafile.probe_context`),
then runs snmpsim's unmodified ``main()``. If a future snmpsim defines the snake_case
method itself, nothing is patched.

Usage: ``python -m ctfleet.lab.simfleet._snmpsim [snmpsim options...]``
"""

from __future__ import annotations

import sys
from hashlib import md5


def _probe_context_name(responder, snmp_engine) -> bytes | None:
    from pysnmp import error as pysnmp_error
    from snmpsim import datafile

    ctx = snmp_engine.observer.get_execution_context("rfc3412.receiveMessage:request")
    domain, address = ctx["transportDomain"], ctx["transportAddress"]
    engine_id, name = ctx["contextEngineId"], ctx["contextName"].prettyPrint()
    engine_label = datafile.SELF_LABEL if engine_id == snmp_engine.snmpEngineID else engine_id.prettyPrint()
    for candidate in datafile.probe_context(domain, address, engine_label, name):
        probed = md5(candidate).hexdigest().encode() if len(candidate) > 32 else candidate
        try:
            responder.snmpContext.get_mib_instrum(probed)
        except pysnmp_error.PySnmpError:
            continue
        return probed
    try:
        responder.snmpContext.get_mib_instrum(name)
    except pysnmp_error.PySnmpError:
        return None
    return name.encode() if isinstance(name, str) else name


def patch() -> bool:
    """Install the per-endpoint selection; False if snmpsim already has it."""
    from snmpsim.commands import responder as r

    patched = False
    for cls_name in ("GetCommandResponder", "SetCommandResponder", "NextCommandResponder", "BulkCommandResponder"):
        cls = getattr(r, cls_name)
        if "handle_management_operation" in cls.__dict__:
            continue
        base = cls.__mro__[1]

        def handle_management_operation(self, snmpEngine, stateReference, contextName, PDU, _base=base):
            probed = _probe_context_name(self, snmpEngine)
            if probed is None:  # no data for this endpoint/community/context: no answer
                self.release_state_information(stateReference)
                return
            _base.handle_management_operation(self, snmpEngine, stateReference, probed, PDU)

        cls.handle_management_operation = handle_management_operation
        patched = True
    return patched


def main() -> int:
    patch()
    from snmpsim.commands import responder

    sys.argv[0] = "snmpsim-command-responder"
    return responder.main() or 0


if __name__ == "__main__":
    sys.exit(main())
