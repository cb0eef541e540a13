"""The simulated fleet of SNMP agents that the demo and the tests poll (real agents).

* :mod:`.data` -- pure: per-device profiles from the registry and a seed (system group,
  interface table with an identifiable uplink at the site's declared bandwidth, faults,
  link latency/loss by link type), snmpsim ``.snmprec`` files, fake per-run secrets;
* :mod:`.run` -- :class:`SimFleet`: snmpsim agents (all devices, a few processes)
  behind :mod:`.relay`, an asyncio UDP relay on every device's management address that
  emulates latency, loss and dead/slow/truncated agents (the kernel here has no netem);
* :mod:`.snmpd` -- :class:`SnmpdAgent`: a real net-snmp ``snmpd`` with an SNMPv3
  authPriv user, optionally in a network namespace with a fixed interface table;
* ``python -m ctfleet.lab.simfleet --workdir DIR [--region R] [--limit N]`` runs
  the fleet until SIGTERM/SIGINT.

Traffic stays on loopback (127.0.0.0/8) or inside namespaces these modules create;
every process started here dies with its context manager, at interpreter exit, or
(``PR_SET_PDEATHSIG``) when its parent dies.
"""

from ctfleet.lab.simfleet.data import DeviceProfile, SnmpCredentials, build_profiles
from ctfleet.lab.simfleet.run import SimFleet, SimFleetError, free_port, start_simfleet
from ctfleet.lab.simfleet.snmpd import SnmpdAgent, start_snmpd_agents

__all__ = ["DeviceProfile", "SnmpCredentials", "build_profiles", "SimFleet", "SimFleetError", "free_port",
           "start_simfleet", "SnmpdAgent", "start_snmpd_agents"]
