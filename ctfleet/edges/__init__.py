"""Edge helpers shared by several edges: credential references resolved from the
environment, files and Ansible Vault (:mod:`~ctfleet.edges.credentials`).

May import: the core. Imported by the edges (monitors, routers, rollout) and the CLI.
The network itself is touched by each edge package (monitors: SNMP/ICMP/HTTP; routers:
SSH; rollout: Ansible; stacks: Pulumi), never by the core.
"""
