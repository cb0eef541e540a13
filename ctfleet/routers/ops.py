"""The router operations, per router and over a fleet: backup, diff, audit, push, restore.

Each operation on one router returns an :class:`~ctfleet.routers.fanout.Outcome` and
never raises for that router's problems (unreachable, wrong credentials, an unexpected
prompt, a norm the template needs and the CT lacks): the others carry on.
:meth:`RouterOps.run` runs one over many routers with the bounded runner, then writes
what the run produced: one backup commit, and the control results (source
``router_audit``) to the results store, one batch per router.

The push never locks the operator out::

    1. read the running configuration; plan the change (nothing to do: stop)
    2. arm the revert ON THE ROUTER, then apply       (IOS: configure replace ... revert timer;
                                                       FRR: ctfleet-guard arm, then vtysh)
    3. open a NEW session from the controller and read the configuration: management works
    4. confirm on the router (and save)                (until then the router reverts by itself)
    5. if 3 fails: wait for the router's own revert, reconnect, check it came back

A restore is the same path (:meth:`RouterOps._change`) with another plan: the backup
revision's full configuration (decrypted with ``backup_identity``, the secrets ctfleet
manages re-injected from the current credentials references) replaces the running one,
line by line on FRR, ``configure replace`` on IOS, with the revert armed first.
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

from ctfleet.core.compliance import ControlResult, Source, Status
from ctfleet.core.conventions import DEVICE_LABELS, ct_label_values
from ctfleet.core.errors import CtfleetError, InputError
from ctfleet.core.models import CT, Device, Role, Site
from ctfleet.core.norms import Resolved
from ctfleet.core.secrets import MASK, CredentialRef, Secret
from ctfleet.edges.credentials import resolve
from ctfleet.results import ResultsStore
from ctfleet.routers.audit import audit_router, backup_result
from ctfleet.routers.backups import BackupMetric, BackupStore, Revision, unseal, write_metrics
from ctfleet.routers.configtext import (
    Plan,
    Section,
    candidate,
    commands,
    last_change,
    mask,
    ordered_paths,
    overwrites,
    parse,
    plan,
    reinject,
    render,
    stable,
    undo,
)
from ctfleet.routers.drivers import (
    Applied,
    ArmedDict,
    Connector,
    DeviceChange,
    DeviceError,
    Login,
    RouterSession,
    Target,
)
from ctfleet.routers.platforms import PlatformSpec, platform_spec
from ctfleet.routers.render import Rendered, SnmpUser, render_intended, router_norms, router_vars
from ctfleet.routers.fanout import Outcome, run_bounded
from ctfleet.routers.settings import RouterSettings, check_backup_path, load_settings

Action = Literal["backup", "diff", "audit", "push", "restore"]


@dataclass(frozen=True)
class RouterJob:
    device: Device
    ct: CT
    site: Site | None
    spec: PlatformSpec
    norms: Mapping[str, Resolved]  # the CT's controls applicable to routers


def select_routers(registry, norms, cts: Iterable[str] = (), hostnames: Iterable[str] = ()) -> tuple[list[RouterJob], list[Outcome]]:
    """The registry's routers (optionally some CTs or hostnames) as jobs; routers ctfleet
    cannot work on (unknown platform, no management address) as failed outcomes."""
    cts, hostnames = set(cts), set(hostnames)
    jobs: list[RouterJob] = []
    bad: list[Outcome] = []
    for d in sorted(registry.devices.values(), key=lambda d: d.hostname):
        if d.role != Role.ROUTER:
            continue
        site = registry.sites.get(d.site_code)
        ct = registry.cts.get(site.ct_code) if site else None
        if ct is None or (cts and ct.code not in cts) or (hostnames and d.hostname not in hostnames):
            continue
        try:
            spec = platform_spec(d.platform, where=f"device {d.hostname}")
        except InputError as exc:
            bad.append(Outcome(d.hostname, ct.code, "failed", str(exc), error_kind="platform"))
            continue
        if d.mgmt_address is None:
            bad.append(Outcome(d.hostname, ct.code, "failed", f"device {d.hostname}: no mgmt_address in the registry",
                               error_kind="platform"))
            continue
        jobs.append(RouterJob(d, ct, site, spec, router_norms(norms.resolve(ct))))
    return jobs, bad


@dataclass
class RunReport:
    action: Action
    outcomes: list[Outcome]
    commit: str | None = None
    results_written: int = 0
    metrics_file: Path | None = None
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


@dataclass
class _Change:
    """A change ready for the router: what to send, what to mask, how to tell what is left."""

    device: DeviceChange
    known: list[str]  # secret values to mask in what is shown
    still: Callable[[str], list[str]]  # running configuration read back -> what still differs
    what: str  # "pushed RTR-1, RTR-4" / "restored revision ..."
    note: str
    data: dict[str, Any]


@dataclass
class RouterOps:
    project_root: Path
    settings: RouterSettings = field(default_factory=RouterSettings)
    results: ResultsStore | None = None
    backups: BackupStore | None = None
    connector: Callable[..., RouterSession] = field(default_factory=Connector)
    template_dir: Path | None = None
    env: Mapping[str, str] | None = None
    port: int = 22  # SSH port of every router (the labs use their own)
    ports: Mapping[str, int] = field(default_factory=dict)  # per hostname, overriding ``port``
    revert_grace_seconds: float | None = None
    sleep: Callable[[float], None] = time.sleep  # waiting for a router's own revert (tests with recorded sessions skip it)

    @classmethod
    def from_project(cls, project, settings_file: str | Path | None = None, backup_repo: str | Path | None = None,
                     **kw: Any) -> "RouterOps":
        """The operations as the CLI and the Ansible module run them: the project's results
        store, the settings (file, ``CTFLEET_ROUTER_SETTINGS`` or defaults) and the backup
        repository (``backup_repo``, else the settings'), never inside the project."""
        settings = load_settings(settings_file)
        repo = check_backup_path(Path(backup_repo), project.root) if backup_repo else settings.backup_path(project.root)
        return cls(project.root, settings, results=ResultsStore(project.results_dir),
                   backups=BackupStore(repo, project.root, recipients=settings.backup_recipients), **kw)

    # ------------------------------------------------------------ plumbing
    def login(self, job: RouterJob) -> Login:
        ref = self.settings.for_region(job.ct.region_code)["login"]
        try:
            return Login.from_secret(resolve(CredentialRef.parse(ref), self.project_root, self.env), ref)
        except CtfleetError as exc:
            raise DeviceError("credentials", f"login of {job.device.hostname}: {exc}") from None

    def snmp_user(self, job: RouterJob) -> SnmpUser:
        ref = job.device.credentials
        if ref is None:
            raise DeviceError("credentials", f"{job.device.hostname} has no credentials reference for its SNMPv3 user")
        try:
            value = resolve(ref, self.project_root, self.env)
            data = json.loads(value.reveal())
            return SnmpUser(str(data["user"]), Secret(str(data["auth_key"])), Secret(str(data["priv_key"])))
        except CtfleetError as exc:
            raise DeviceError("credentials", f"SNMPv3 user of {job.device.hostname}: {exc}") from None
        except (ValueError, KeyError, TypeError):
            raise DeviceError("credentials", f"credentials {ref}: the value is not JSON with user, auth_key and priv_key (value not shown)") from None

    def target(self, job: RouterJob, connect_timeout: float | None = None) -> Target:
        return Target(job.device.hostname, str(job.device.mgmt_address), self.ports.get(job.device.hostname, self.port),
                      self.login(job), connect_timeout or self.settings.connect_timeout_seconds,
                      min(60.0, self.settings.device_timeout_seconds))

    def open(self, job: RouterJob, connect_timeout: float | None = None) -> RouterSession:
        return self.connector(job.spec.driver, self.target(job, connect_timeout), job.spec.netmiko_device_type)

    def intended(self, job: RouterJob, reveal: bool = False) -> Rendered:
        try:
            snmp = self.snmp_user(job) if reveal and "RTR-2" in job.norms else None
            v = router_vars(job.device, job.ct, job.site, job.norms, self.settings, snmp)
            return render_intended(job.spec, v, reveal=reveal, template_dir=self.template_dir)
        except InputError as exc:
            raise DeviceError("norms", str(exc)) from None

    def known_secrets(self, job: RouterJob) -> list[str]:
        out = []
        try:
            login = self.login(job)
            if login.password:
                out.append(login.password.reveal())
        except DeviceError:
            pass
        return out

    def _plan(self, job: RouterJob, config_text: str, r: Rendered):
        return plan(parse(config_text), r.sections, job.spec.owned, job.spec.ordered_blocks, r.order)

    @staticmethod
    def _fail(job: RouterJob, err: DeviceError, **data: Any) -> Outcome:
        return Outcome(job.device.hostname, job.ct.code, "failed", err.message, error_kind=err.kind, data=data)

    def _guarded(self, job: RouterJob, fn: Callable[[], Outcome], on_error: Callable[[DeviceError], dict] | None = None) -> Outcome:
        try:
            return fn()
        except DeviceError as err:
            return self._fail(job, err, **(on_error(err) if on_error else {}))

    # ------------------------------------------------------------ backup
    def backup(self, job: RouterJob) -> Outcome:
        def go() -> Outcome:
            if self.backups is None:
                raise DeviceError("internal", "no backup repository configured")
            s = self.open(job)
            try:
                raw = s.get_config()
            finally:
                s.close()
            text = stable(mask(raw, self.known_secrets(job)))
            lc = last_change(raw)
            saved = self.backups.save(job.device, job.ct, text, f"{lc[0]} by {lc[1]}" if lc and lc[1] else (lc[0] if lc else None),
                                      full=Secret(stable(raw)))
            rtr7 = job.norms.get("RTR-7")
            results = [backup_result(job.ct.code, job.device.hostname, rtr7, 0.0)] if rtr7 else []
            what = ("changed: " if saved.changed else "unchanged: ") + saved.path
            if not saved.sealed:
                what += " (masked only: no backup_recipients, so no restorable full copy)"
            return Outcome(job.device.hostname, job.ct.code, "ok", what,
                           data={"path": saved.path, "changed": saved.changed, "sealed": saved.sealed, "results": results})

        def on_error(err: DeviceError) -> dict:
            if self.backups is None:
                return {}
            self.backups.failed()
            rtr7 = job.norms.get("RTR-7")
            age = self.backups.age_hours(job.device.hostname)
            return {"results": [backup_result(job.ct.code, job.device.hostname, rtr7, age)] if rtr7 else []}

        return self._guarded(job, go, on_error)

    def backup_metric(self, job: RouterJob) -> BackupMetric:
        labels = dict(zip(DEVICE_LABELS, (*ct_label_values(job.ct, [job.site] if job.site else []),
                                          job.device.hostname, job.device.role.value, job.spec.platform.value)))
        rtr7 = job.norms.get("RTR-7")
        last = self.backups.last_fetch(job.device.hostname) if self.backups else None
        return BackupMetric(labels, last, float(rtr7.value) if rtr7 is not None else None)

    # ------------------------------------------------------------ diff
    def diff(self, job: RouterJob) -> Outcome:
        def go() -> Outcome:
            r = self.intended(job)
            s = self.open(job)
            try:
                raw = s.get_config()
            finally:
                s.close()
            masked = mask(raw, self.known_secrets(job))
            running = parse(masked)
            p = self._plan(job, masked, r)
            if p.empty:
                return Outcome(job.device.hostname, job.ct.code, "ok", "in its norm: no difference", data={"diff": "", "controls": []})
            before = render(running, job.spec.style)
            after = candidate(running, p, job.spec.style)
            text = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                                f"{job.device.hostname} running", f"{job.device.hostname} intended", n=1))
            controls = [d.control for d in p.deltas if not d.in_norm]
            return Outcome(job.device.hostname, job.ct.code, "ok",
                           f"{len(p.add)} line(s) to add, {len(p.remove)} to remove ({', '.join(controls)})",
                           data={"diff": text, "controls": controls})

        return self._guarded(job, go)

    # ------------------------------------------------------------ audit
    def audit(self, job: RouterJob) -> Outcome:
        now = datetime.now(timezone.utc)
        age = self.backups.age_hours(job.device.hostname, now) if self.backups else None

        def go() -> Outcome:
            r = self.intended(job)
            s = self.open(job)
            try:
                raw = s.get_config()
                state = s.get_state(job.spec.state_commands)
            finally:
                s.close()
            masked = mask(raw, self.known_secrets(job))
            results = audit_router(job.spec, job.ct.code, job.device.hostname, job.norms, parse(masked),
                                   self._plan(job, masked, r), state, age, now)
            counts = {st: sum(1 for x in results if x.status == st) for st in (Status.PASS, Status.FAIL, Status.UNKNOWN)}
            failing = [x.control for x in results if x.status == Status.FAIL]
            summary = f"{counts[Status.PASS]} pass, {counts[Status.FAIL]} fail, {counts[Status.UNKNOWN]} unknown"
            return Outcome(job.device.hostname, job.ct.code, "ok", summary + (f" (failing: {', '.join(failing)})" if failing else ""),
                           data={"results": results})

        def unknown_all(err: DeviceError) -> dict:
            # The router did not answer: every control is unknown (coverage drops), never pass.
            res = []
            for cid, rv in job.norms.items():
                if cid == "RTR-7":
                    res.append(backup_result(job.ct.code, job.device.hostname, rv, age, now))
                    continue
                res.append(ControlResult(ct=job.ct.code, device=job.device.hostname, control=cid, status=Status.UNKNOWN,
                                         source=Source.ROUTER_AUDIT, evidence=f"{err.kind}: {err.message}",
                                         expected=rv.value if isinstance(rv.value, (bool, int, float, str)) else str(rv.value),
                                         observed_at=now))
            return {"results": res}

        return self._guarded(job, go, unknown_all)

    # ------------------------------------------------------------ push (and restore: the same path)
    def push(self, job: RouterJob, revert_after: int | None = None, allow_disruptive: bool = False) -> Outcome:
        """Push the difference (see the module docstring). Controls the catalogue marks
        ``disruptive`` (RTR-5, the management ACL) are held back unless ``allow_disruptive``."""
        revert_after = int(revert_after or self.settings.revert_after_seconds)
        held = [] if allow_disruptive else [cid for cid, r in job.norms.items() if r.control.disruptive]
        return self._guarded(job, lambda: self._change(job, revert_after, lambda raw: self._norm_change(job, raw, held)))

    def _norm_change(self, job: RouterJob, raw: str, held: list[str]) -> "_Change | Outcome":
        """What bringing the router to its norms changes, given its running configuration."""

        def without_held(r: Rendered) -> Rendered:
            return Rendered(r.text, r.tree, {c: s for c, s in r.sections.items() if c not in held}, r.order, r.template)

        full = self.intended(job)
        shown = without_held(full)
        device_side = without_held(self.intended(job, reveal=True))
        known = self.known_secrets(job) + _secret_values(device_side.text, shown.text)
        masked = mask(raw, known)
        dplan = self._plan(job, raw, device_side)
        held_diff = [d.control for d in self._plan(job, masked, full).deltas if d.control in held and not d.in_norm]
        note = f"; held back (disruptive, needs --allow-disruptive): {', '.join(held_diff)}" if held_diff else ""
        if dplan.empty:
            if held_diff:
                return Outcome(job.device.hostname, job.ct.code, "ok", "nothing pushed" + note, data={"held": held_diff})
            return Outcome(job.device.hostname, job.ct.code, "in-norm", "already in its norm: nothing pushed")
        splan = self._plan(job, masked, shown)
        fixing = [d.control for d in splan.deltas if not d.in_norm] or [d.control for d in dplan.deltas if not d.in_norm]

        def still(after: str) -> list[str]:
            return [d.control for d in self._plan(job, mask(after, known), shown).deltas if not d.in_norm]

        return _Change(self._device_change(job, raw, dplan), known, still, f"pushed {', '.join(fixing)}", note,
                       {"controls": fixing, "held": held_diff})

    def _device_change(self, job: RouterJob, raw: str, p: Plan) -> DeviceChange:
        running = parse(raw)
        return DeviceChange(p, candidate(running, p, job.spec.style), tuple(commands(p)), tuple(commands(undo(running, p))))

    def _change(self, job: RouterJob, revert_after: int, prepare: Callable[[str], "_Change | Outcome"]) -> Outcome:
        """Read the running configuration, let ``prepare`` plan the change, apply it with the
        revert armed on the router, then confirm from a new session (or wait for the revert)."""
        step = job.spec.revert_step_seconds
        if revert_after % step:
            raise DeviceError("platform", f"{job.spec.platform.value} arms its revert timer in steps of {step} s: "
                              f"use a multiple of {step} (got {revert_after})")
        s: RouterSession | None = self.open(job)
        try:
            change = prepare(s.get_config())
            if isinstance(change, Outcome):
                return change
            try:
                armed = s.arm_and_apply(change.device, revert_after)
            except Applied as a:
                if a.error.kind == "rejected":
                    s.revert(a.armed)
                    raise DeviceError("rejected", a.error.message + " - reverted at once; the router is as before") from None
                _close_quietly(s)
                s = None
                return self._await_revert(job, a.armed, a.error, change.data.get("controls", []))
        finally:
            if s is not None:
                s.close()
        return self._confirm(job, armed, change)

    def _confirm(self, job: RouterJob, armed: ArmedDict, change: "_Change") -> Outcome:
        """Management must still work from here: a NEW session reads the configuration, then confirms."""
        controls = change.data.get("controls", [])
        try:
            check = self.open(job, connect_timeout=min(self.settings.connect_timeout_seconds, 10.0))
        except DeviceError as err:
            return self._await_revert(job, armed, err, controls)
        try:
            after = check.get_config()
            check.confirm(armed)
        except DeviceError as err:
            check.close()
            return self._await_revert(job, armed, err, controls)
        check.close()
        still = change.still(after)
        summary = (f"{change.what} with the revert armed on the router ({armed['mechanism']}); "
                   "management checked from the controller; confirmed and saved")
        if still:
            summary += f"; still differing: {', '.join(still)}"
        return Outcome(job.device.hostname, job.ct.code, "changed", summary + change.note,
                       data={**change.data, "token": armed["token"], "device_diff": armed["device_diff"],
                             "commands": [mask(c, change.known) for c in change.device.commands]})

    # ------------------------------------------------------------ restore
    def restore(self, job: RouterJob, rev: str | None = None, revert_after: int | None = None) -> Outcome:
        """Re-apply the router's backup at ``rev`` (default: its latest) through the push path:
        the encrypted full copy, secrets ctfleet manages re-injected from the current
        credentials references, the revert armed on the router, confirmed only when
        management still works from the controller."""
        revert_after = int(revert_after or self.settings.revert_after_seconds)

        def go() -> Outcome:
            target, revision = self.restore_target(job, rev)
            return self._change(job, revert_after, lambda raw: self._restore_change(job, raw, target, revision))

        return self._guarded(job, go)

    def restore_target(self, job: RouterJob, rev: str | None) -> tuple[Secret, Revision]:
        """The configuration to restore (secrets in it) and the revision it comes from."""
        if self.backups is None:
            raise DeviceError("backup", "no backup repository configured")
        try:
            revision = self.backups.revision(job.device, job.ct, rev)
        except InputError as exc:
            raise DeviceError("backup", str(exc)) from None
        where = f"{self.backups.path} {revision.commit[:10]}"
        if revision.sealed is not None:
            ref = self.settings.backup_identity
            if ref is None:
                raise DeviceError("credentials", f"revision {revision.commit[:10]} keeps the full configuration encrypted; "
                                  "backup_identity (a credentials reference to the age identity) is not set in the router settings")
            try:
                text = unseal(revision.sealed, resolve(CredentialRef.parse(ref), self.project_root, self.env), where).reveal()
            except (CtfleetError, ValueError) as exc:
                raise DeviceError("credentials", str(exc)) from None
        else:
            text = revision.masked
        try:
            device_side, shown = self.intended(job, reveal=True).text, self.intended(job).text
        except DeviceError:
            device_side = shown = ""  # the norms changed since: nothing to re-inject from them
        text = reinject(text, device_side, shown)
        left = [n for n, line in enumerate(text.split("\n"), 1) if MASK in line]
        if left:
            raise DeviceError("credentials", f"revision {revision.commit[:10]} of {job.device.hostname} has secrets kept only "
                              f"masked (line(s) {', '.join(map(str, left[:5]))}) and no credentials reference for them: "
                              "restore a revision with an encrypted full copy (backup_recipients)")
        return Secret(text), revision

    def _restore_change(self, job: RouterJob, raw: str, target: Secret, revision: Revision) -> "_Change | Outcome":
        want = parse(target.reveal())
        order = ordered_paths(want)
        sections = {"restore": Section("restore", tuple(order))}

        def plan_from(text: str) -> Plan:
            # Everything is in scope: what the revision does not have is removed.
            return plan(parse(text), sections, {"restore": ("",)}, job.spec.ordered_blocks, order)

        known = self.known_secrets(job) + _masked_values(target.reveal())
        p = plan_from(raw)
        if p.empty:
            return Outcome(job.device.hostname, job.ct.code, "in-norm",
                           f"already as revision {revision.commit[:10]} ({revision.when}): nothing restored")

        def still(after: str) -> list[str]:
            left = plan_from(after)
            return [f"{len(left.add)} line(s) missing, {len(left.remove)} extra"] if not left.empty else []

        running = parse(raw)
        forward = overwrites(p, job.spec.single_valued)
        back = overwrites(undo(running, p), job.spec.single_valued)
        change = DeviceChange(forward, candidate(running, p, job.spec.style), tuple(commands(forward)), tuple(commands(back)))
        return _Change(change, known, still,
                       f"restored revision {revision.commit[:10]} ({revision.when}; {len(p.add)} line(s) added, "
                       f"{len(p.remove)} removed)", "", {"controls": ["restore"], "revision": revision.commit})

    def _await_revert(self, job: RouterJob, armed, err: DeviceError, fixing: list[str]) -> Outcome:
        """Management was lost (or not confirmed): wait for the router's own revert, then look."""
        grace = self.revert_grace_seconds if self.revert_grace_seconds is not None else max(15.0, 0.1 * armed["revert_after"])
        deadline = armed["armed_at"] + armed["revert_after"] + grace
        self.sleep(max(0.0, deadline - time.time()))
        last_err = err
        for _ in range(3):
            try:
                s = self.open(job, connect_timeout=min(self.settings.connect_timeout_seconds, 10.0))
            except DeviceError as e:
                last_err = e
                self.sleep(2)
                continue
            try:
                pend = s.pending()
                back = s.get_config()
            except DeviceError as e:
                last_err = e
                continue
            finally:
                s.close()
            if pend.get("armed"):
                return Outcome(job.device.hostname, job.ct.code, "failed",
                               f"management was lost ({err.message}); the router answers again but its revert is still pending",
                               error_kind="lost")
            return Outcome(job.device.hostname, job.ct.code, "reverted",
                           f"management was lost after the change ({err.kind}: {err.message}); not confirmed, so the router "
                           f"restored its saved configuration by itself ({armed['mechanism']}); management works again",
                           error_kind=err.kind,
                           data={"controls": fixing, "token": armed["token"], "last": pend.get("last"),
                                 "config_after_revert": mask(back, self.known_secrets(job))})
        return Outcome(job.device.hostname, job.ct.code, "failed",
                       f"management lost after the change and still no answer {grace:.0f} s after the router's revert "
                       f"deadline ({last_err.kind}: {last_err.message}): needs someone on site", error_kind="lost")

    # ------------------------------------------------------------ over a fleet
    def timeout_for(self, action: Action, revert_after: int | None = None) -> float:
        base = self.settings.device_timeout_seconds
        if action in ("push", "restore"):
            r = revert_after or self.settings.revert_after_seconds
            return base + r + max(15.0, 0.1 * r) + 4 * self.settings.connect_timeout_seconds + 30
        return base

    def run(self, action: Action, jobs: list[RouterJob], *, concurrency: int | None = None,
            revert_after: int | None = None, allow_disruptive: bool = False, pre_failed: Iterable[Outcome] = (),
            on_start=None, on_done=None, rev: str | None = None, fleet: list[RouterJob] | None = None) -> RunReport:
        """Run one action over ``jobs``. A backup also writes the age metrics (settings'
        ``backup_metrics_file``) for every router of ``fleet`` (default: ``jobs``), so a run
        over one CT keeps the others' series."""
        work: Callable[[RouterJob], Outcome] = {
            "backup": self.backup, "diff": self.diff, "audit": self.audit,
            "push": lambda j: self.push(j, revert_after, allow_disruptive),
            "restore": lambda j: self.restore(j, rev, revert_after)}[action]
        if action == "backup" and self.backups is not None:
            self.backups.init()
        outcomes = run_bounded(jobs, work, concurrency=concurrency or self.settings.concurrency,
                               timeout_for=lambda j: self.timeout_for(action, revert_after),
                               name_of=lambda j: (j.device.hostname, j.ct.code), on_start=on_start, on_done=on_done)
        report = RunReport(action, list(pre_failed) + outcomes)
        if action == "backup" and self.backups is not None:
            for o in outcomes:
                if o.status == "timeout":
                    self.backups.failed()
            report.commit = self.backups.commit()
            if self.settings.backup_metrics_file:
                report.metrics_file = write_metrics(Path(self.settings.backup_metrics_file),
                                                    [self.backup_metric(j) for j in (fleet or jobs)])
        if self.results is not None and action in ("backup", "audit"):
            for o in outcomes:
                results = o.data.get("results") or []
                if results:
                    suffix = "-backup" if action == "backup" else ""
                    self.results.write_batch(Source.ROUTER_AUDIT, f"{o.hostname}{suffix}", results)
                    report.results_written += len(results)
        return report


def _close_quietly(session: RouterSession) -> None:
    """Close a session whose link may be dead without waiting for it (its goodbye may never be answered)."""
    import threading

    threading.Thread(target=session.close, daemon=True).start()


def _masked_values(text: str) -> list[str]:
    """The values :func:`mask` hides in ``text`` (to mask them again in commands shown)."""
    return _secret_values(text, mask(text))


def _secret_values(device_text: str, shown_text: str) -> list[str]:
    """Values the device rendering has where the display one shows <secret> (to mask them in outputs)."""
    out = []
    for dl, sl in zip(device_text.split("\n"), shown_text.split("\n")):
        if dl != sl and "<secret>" in sl:
            dw, sw = dl.split(), sl.split()
            out.extend(d for d, s in zip(dw, sw) if s == "<secret>")
    return out
