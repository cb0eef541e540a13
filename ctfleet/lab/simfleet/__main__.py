"""``python -m ctfleet.lab.simfleet --workdir DIR [--region R] [--limit N] [--port P]``

Starts the simulated SNMP fleet for the project's registry, prints the endpoints
summary, and runs until SIGTERM or SIGINT (then stops every process it started).
With ``--env-file FILE`` it also writes the fake credentials as ``NAME=VALUE`` lines
(0600) for a collector started by hand; they are valid for this run only.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctfleet.lab.simfleet", description=__doc__.splitlines()[2])
    ap.add_argument("--workdir", required=True, help="runtime directory (data files, secrets, logs)")
    ap.add_argument("--region", help="only this region's devices (HCP code, e.g. 12)")
    ap.add_argument("--limit", type=int, help="only the first N devices in hostname order")
    ap.add_argument("--port", type=int, default=161, help="UDP port of every management address (default 161)")
    ap.add_argument("--echo-port", type=int, help="also answer UDP echo with the link's latency and loss")
    ap.add_argument("--processes", type=int, help="snmpsim processes (default: by CPU count and fleet size)")
    ap.add_argument("--profile", help="project profile (default ctfleet.yaml / CTFLEET_PROFILE)")
    ap.add_argument("--list", action="store_true", help="print every device's endpoint, SNMP version, fault and link")
    ap.add_argument("--env-file", help="write the run's credentials as NAME=VALUE lines to this file (0600)")
    args = ap.parse_args(argv)

    from ctfleet.lab.simfleet.data import write_secret_file
    from ctfleet.lab.simfleet.run import SimFleetError, start_simfleet
    from ctfleet.project import load_project

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    project = load_project(args.profile)
    try:
        fleet = start_simfleet(project, args.workdir, port=args.port, limit=args.limit, region=args.region,
                               echo_port=args.echo_port, processes=args.processes)
    except SimFleetError as exc:
        print(f"simfleet: {exc}", file=sys.stderr)
        return 1
    with fleet:
        print(fleet.summary(), flush=True)
        if args.list:
            for p in sorted(fleet.profiles.values(), key=lambda p: p.hostname):
                host, port = fleet.endpoint(p.hostname)
                print(f"  {p.hostname:<18} {host}:{port:<6} {p.snmp_version:<4} {p.fault:<9} {p.link.type:<5} "
                      f"rtt {p.link.rtt_ms:6.1f} ms loss {p.link.loss:.3f} uplink {p.uplink.name} "
                      f"{p.uplink.speed_mbps} Mbit/s {'up' if p.uplink.oper_up else 'DOWN'}")
        if args.env_file:
            write_secret_file(__import__("pathlib").Path(args.env_file),
                              "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(fleet.credential_env().items())))
            print(f"  credentials: {args.env_file}", flush=True)
        print("running; SIGTERM or Ctrl-C to stop", flush=True)
        while not stop.wait(1.0):
            pass
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
