"""Router sessions over SSH: the edge where ctfleet talks to routers (napalm, netmiko).

The interface is the spec: every driver implements :class:`RouterSession`, and the
shared conformance checks (``test_conformance_*`` in ``tests/test_routers_ios_mock.py``,
``tests/test_routers_frr.py`` and ``tests/test_routers_fake_ios.py``) check each one's
methods and the shapes they return, against recorded outputs (napalm's mock driver) or a
live device (FRR in the lab, fake-switches' IOS).

* ``napalm`` (Cisco IOS, and any napalm driver: ``ros``, ``huawei_vrp`` ...): the
  platform's safest change: ``load_replace_candidate`` + ``compare_config`` +
  ``commit_config(revert_in=N)`` (on IOS, ``configure replace ... revert timer`` from
  the archive: the device reverts by itself unless ``configure confirm`` comes).
* ``vtysh`` (FRRouting): netmiko's ``cisco_ios`` dialect on the vtysh session; the
  revert is armed on the router host by ``ctfleet-guard`` (see ``host/``) over an exec
  channel of the same SSH connection, before the first change is sent.

Every failure is a :class:`DeviceError` whose ``kind`` says what went wrong for the
technician: ``unreachable``, ``auth``, ``prompt`` (the device answered, but not as a
router), ``rejected`` (a command refused), ``lost`` (the session died mid-change),
``timeout``, ``credentials``.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, TypedDict, runtime_checkable

from ctfleet.core.secrets import Secret
from ctfleet.routers.configtext import Plan, mask

ErrorKind = Literal["unreachable", "auth", "prompt", "rejected", "lost", "timeout", "credentials", "norms", "platform", "backup", "internal"]


class DeviceError(Exception):
    def __init__(self, kind: ErrorKind, message: str):
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")


@dataclass(frozen=True)
class Login:
    username: str
    password: Secret | None = None
    key_file: str | None = None

    @classmethod
    def from_secret(cls, value: Secret, ref: str) -> "Login":
        """The login behind a reference: JSON ``{"username", "password"}`` or ``{"username", "key_file"}``."""
        try:
            data = json.loads(value.reveal())
            assert isinstance(data, dict) and isinstance(data.get("username"), str)
        except (ValueError, AssertionError):
            raise DeviceError("credentials", f"credentials {ref}: the value is not JSON with a username "
                              '(valid: {"username": ..., "password": ...} or {"username": ..., "key_file": ...}; value not shown)') from None
        if not data.get("password") and not data.get("key_file"):
            raise DeviceError("credentials", f"credentials {ref}: the value has neither password nor key_file")
        return cls(data["username"], Secret(data["password"]) if data.get("password") else None, data.get("key_file"))


@dataclass(frozen=True)
class Target:
    hostname: str
    address: str
    port: int = 22
    login: Login | None = None
    connect_timeout: float = 15.0
    command_timeout: float = 60.0


@dataclass(frozen=True)
class DeviceChange:
    """What to change on one router: the plan, as a full candidate and as commands."""

    plan: Plan
    candidate: str  # full configuration after the change (replace-capable platforms)
    commands: tuple[str, ...]  # configuration-mode commands (line-by-line platforms)
    undo: tuple[str, ...] = ()  # commands that take the router back (handed to an on-device revert)


class ArmedDict(TypedDict):
    """A change applied with its revert armed on the device.

    >>> ArmedDict(token="c3a1f0d2", mechanism="ctfleet-guard", revert_after=300, armed_at=1790000000.0, device_diff="...")
    {'token': 'c3a1f0d2', 'mechanism': 'ctfleet-guard', 'revert_after': 300, 'armed_at': 1790000000.0, 'device_diff': '...'}
    """

    token: str
    mechanism: str
    revert_after: int
    armed_at: float
    device_diff: str  # what the device says will change (masked), or ""


class PendingDict(TypedDict):
    """``{"armed": True, "token": "c3a1f0d2", "seconds_left": 212}`` or ``{"armed": False, "last": "reverted c3a1f0d2 ..."}``"""

    armed: bool
    token: str | None
    seconds_left: int | None
    last: str | None


@runtime_checkable
class RouterSession(Protocol):
    """One open management session to a router.

    ``get_config()`` -> the running configuration as printed (secrets included: mask
    before showing or storing), e.g. ``"Building configuration...\\n...hostname r-01\\n..."``.
    ``get_state(["show ntp status"])`` -> ``{"show ntp status": "Clock is synchronized, ..."}``;
    ``None`` for a command the device refused.
    ``arm_and_apply(change, revert_after)`` -> :class:`ArmedDict`; the revert is armed on
    the device before (or atomically with) the change.
    ``confirm(armed)`` keeps the change and saves it; ``revert(armed)`` restores now;
    ``pending()`` -> :class:`PendingDict`.
    """

    def get_config(self) -> str: ...
    def get_state(self, commands: Sequence[str]) -> dict[str, str | None]: ...
    def arm_and_apply(self, change: DeviceChange, revert_after: int) -> ArmedDict: ...
    def confirm(self, armed: ArmedDict) -> None: ...
    def revert(self, armed: ArmedDict) -> None: ...
    def pending(self) -> PendingDict: ...
    def close(self) -> None: ...


_REFUSED = re.compile(r"^\s*% ?(Unknown command|Invalid input|Incomplete command|Ambiguous command|Command incomplete|"
                      r"Configuration failed|There is no matched command)", re.MULTILINE | re.IGNORECASE)


def refused(output: str) -> bool:
    return bool(_REFUSED.search(output or ""))


# ---------------------------------------------------------------- error mapping
def classify_error(exc: BaseException, target: Target, tail: str = "") -> DeviceError:
    """A netmiko/napalm/paramiko/socket failure as a technician reads it."""
    if isinstance(exc, DeviceError):
        return exc
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 8:  # netmiko wraps the socket's own error: read the whole chain
        chain.append(e)
        e = e.__cause__ or e.__context__
    name = " ".join(type(x).__name__ for x in chain)
    text = " | ".join(str(x) for x in chain)
    # paramiko reports a refused port as NoValidConnectionsError, the errno in .errors
    causes = [*chain, *(v for x in chain if isinstance(getattr(x, "errors", None), dict) for v in x.errors.values())]
    if any(isinstance(x, ConnectionRefusedError) for x in causes):
        return DeviceError("unreachable", f"{target.address}:{target.port} refused the connection (no SSH server there)")
    if "No existing session" in text or "Error reading SSH protocol banner" in text:
        return DeviceError("unreachable", f"{target.address}:{target.port} accepted TCP but never spoke SSH "
                           f"within {target.connect_timeout:g} s")
    where = f"{target.address}:{target.port}"
    user = target.login.username if target.login else "?"
    if "Authentication" in name or "authentication failed" in text.lower() or "Authentication failed" in text:
        return DeviceError("auth", f"{where} refused the login of {user!r} (wrong password or key?)")
    if "connection refused" in text.lower():
        return DeviceError("unreachable", f"{where} refused the connection (no SSH server there)")
    if any(isinstance(x, (socket.timeout, TimeoutError)) for x in chain) or "TCP connection to device failed" in text \
            or "timed-out" in text or "Connection timed out" in text or "No route to host" in text \
            or "Network is unreachable" in text:
        return DeviceError("unreachable", f"no SSH answer from {where} within {target.connect_timeout:g} s")
    if "Error reading SSH protocol banner" in text or "SSH protocol banner" in text:
        return DeviceError("unreachable", f"{where} accepted TCP but never spoke SSH within {target.connect_timeout:g} s")
    if "Pattern not detected" in text or "find_prompt" in text or "ReadTimeout" in name or "prompt" in text.lower():
        said = mask(tail.strip())[-160:].replace("\r", "")
        return DeviceError("prompt", f"{where} answered without a router prompt" + (f"; it said: {said!r}" if said else ""))
    if "Socket is closed" in text or "EOFError" in name or "SSHException" in name:
        return DeviceError("lost", f"the session to {where} closed: {text[:200]}")
    return DeviceError("internal", f"{name}: {mask(text)[:300]}")


# ---------------------------------------------------------------- napalm (Cisco IOS and other napalm platforms)
class NapalmSession:
    """A napalm driver behind the :class:`RouterSession` interface."""

    def __init__(self, driver: str, target: Target, optional_args: Mapping[str, Any] | None = None):
        from napalm import get_network_driver

        self.target = target
        login = target.login or Login("")
        args: dict[str, Any] = {"port": target.port, "conn_timeout": target.connect_timeout,
                                "inline_transfer": True, "read_timeout_override": target.command_timeout}
        if login.key_file:
            args.update(use_keys=True, key_file=login.key_file)
        args.update(optional_args or {})
        self.driver_name = driver
        self.device = get_network_driver(driver)(hostname=target.address, username=login.username,
                                                 password=login.password.reveal() if login.password else "",
                                                 timeout=int(target.command_timeout), optional_args=args)
        try:
            self.device.open()
        except Exception as exc:  # noqa: BLE001 - mapped for the technician
            raise classify_error(exc, target) from None

    def get_config(self) -> str:
        return self._call(lambda: self.device.get_config(retrieve="running")["running"])

    def get_state(self, commands: Sequence[str]) -> dict[str, str | None]:
        if not commands:
            return {}
        out = self._call(lambda: self.device.cli(list(commands)))
        return {c: (None if refused(str(out.get(c, ""))) else str(out.get(c, ""))) for c in commands}

    def arm_and_apply(self, change: DeviceChange, revert_after: int) -> ArmedDict:
        self._call(lambda: self.device.load_replace_candidate(config=change.candidate))
        diff = self._call(lambda: self.device.compare_config())
        armed = ArmedDict(token=f"napalm-{self.driver_name}", mechanism="napalm commit_config(revert_in)",
                          revert_after=revert_after, armed_at=time.time(), device_diff=mask(str(diff)))
        try:
            self.device.commit_config(revert_in=revert_after)
        except Exception as exc:  # noqa: BLE001
            if "CommitConfirm" in type(exc).__name__ or "ReplaceConfig" in type(exc).__name__:
                # The device refused the candidate (IOS restores the original itself): nothing applied.
                raise DeviceError("rejected", mask(str(exc))[:300]) from None
            # The commit may have gone through with its timer armed: let the caller wait for the device.
            raise _Applied(armed, classify_error(exc, self.target)) from None
        return armed

    def confirm(self, armed: ArmedDict) -> None:
        self._call(lambda: self.device.confirm_commit())

    def revert(self, armed: ArmedDict) -> None:
        self._call(lambda: self.device.rollback())

    def pending(self) -> PendingDict:
        armed = bool(self._call(lambda: self.device.has_pending_commit()))
        return PendingDict(armed=armed, token=None, seconds_left=None, last=None)

    def close(self) -> None:
        try:
            self.device.close()
        except Exception:  # noqa: BLE001 - closing a dead session must not hide the real outcome
            pass

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except DeviceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise classify_error(exc, self.target) from None


# ---------------------------------------------------------------- FRRouting through vtysh
class VtyshSession:
    """FRR's vtysh over SSH with netmiko (``cisco_ios`` dialect), plus ``ctfleet-guard`` verbs."""

    def __init__(self, target: Target, device_type: str = "cisco_ios"):
        from netmiko import ConnectHandler

        self.target = target
        self.log = _KeptLog()
        login = target.login or Login("")
        params: dict[str, Any] = dict(device_type=device_type, host=target.address, port=target.port,
                                      username=login.username, conn_timeout=target.connect_timeout,
                                      auth_timeout=target.connect_timeout, banner_timeout=target.connect_timeout,
                                      session_log=self.log, fast_cli=False, allow_agent=False)
        if login.password:
            params["password"] = login.password.reveal()
        if login.key_file:
            params.update(use_keys=True, key_file=login.key_file)
        self.conn = ConnectHandler(auto_connect=False, **params)
        try:
            self.conn._open()  # opened here, not in the constructor: on failure the session log is still ours to read
        except Exception as exc:  # noqa: BLE001
            try:
                self.conn.session_log.close()  # flushes what the device said into self.log
            except Exception:  # noqa: BLE001
                pass
            err = classify_error(exc, target, self._tail())
            if err.kind in ("lost", "internal", "prompt"):  # logged in, then no router prompt: say what it said instead
                known = [login.password.reveal()] if login.password else []
                said = mask(self._tail() or _peek(target), known, patterns=False).strip().replace("\r", "")[-200:]
                err = DeviceError("prompt", f"{target.address}:{target.port} answered without a router prompt"
                                  + (f"; it said: {said!r}" if said else ""))
            raise err from None

    def _tail(self) -> str:
        try:
            return self.log.getvalue().decode(errors="replace")[-400:]
        except ValueError:
            return ""

    def _send(self, command: str) -> str:
        try:
            return self.conn.send_command(command, read_timeout=self.target.command_timeout)
        except Exception as exc:  # noqa: BLE001
            err = classify_error(exc, self.target, self._tail())
            raise (DeviceError("lost", f"no answer to {command!r} from {self.target.address}") if err.kind == "prompt" else err) from None

    def guard(self, *args: str, stdin: str = "") -> str:
        """Run a ctfleet-guard verb on the router host, over an exec channel of this connection."""
        client = self.conn.remote_conn_pre
        try:
            sin, out, err = client.exec_command("ctfleet-guard " + " ".join(args), timeout=self.target.command_timeout)
            if stdin:
                sin.write(stdin)
            sin.channel.shutdown_write()
            text, errtext = out.read().decode(), err.read().decode()
            status = out.channel.recv_exit_status()
        except Exception as exc:  # noqa: BLE001
            raise classify_error(exc, self.target) from None
        if status != 0:
            raise DeviceError("rejected", f"ctfleet-guard {args[0]}: {(errtext or text).strip()} (exit {status})")
        return text.strip()

    def get_config(self) -> str:
        return self._send("show running-config")

    def get_state(self, commands: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for c in commands:
            text = self._send(c)
            out[c] = None if refused(text) else text
        return out

    def arm_and_apply(self, change: DeviceChange, revert_after: int) -> ArmedDict:
        token = secrets.token_hex(6)
        # Armed BEFORE the first change; the undo commands cover what frr-reload leaves (line vty).
        said = self.guard("arm", str(int(revert_after)), token, stdin="".join(c + "\n" for c in change.undo))
        if not said.startswith(f"armed {token}"):
            raise DeviceError("rejected", f"ctfleet-guard did not arm: {said!r}")
        armed = ArmedDict(token=token, mechanism="ctfleet-guard on the router host", revert_after=int(revert_after),
                          armed_at=time.time(), device_diff="")
        try:
            # A router that does not answer the change within a third of its revert window
            # has cut this session: stop waiting, the revert is armed on the router.
            wait = max(5.0, min(self.target.command_timeout, revert_after / 3))
            output = self.conn.send_config_set(list(change.commands), read_timeout=wait,
                                               error_pattern=_REFUSED.pattern, exit_config_mode=False)
            # netmiko's own exit_config_mode waits a fixed 10 s: leave config mode on our clock.
            output += self.conn.send_command("end", expect_string=r"#\s*$", read_timeout=wait, cmd_verify=False)
        except Exception as exc:  # noqa: BLE001
            text = str(exc)
            if "Invalid input" in text or "Unknown command" in text or "error_pattern" in text.lower() or "Configuration failed" in text:
                raise _Applied(armed, DeviceError("rejected", f"the router refused a command: {mask(text)[:300]}")) from None
            raise _Applied(armed, DeviceError("lost", f"the session to {self.target.address} stopped answering during the change")) from None
        if refused(output):
            raise _Applied(armed, DeviceError("rejected", "the router refused a command:\n" + mask(output)[-400:]))
        return armed

    def confirm(self, armed: ArmedDict) -> None:
        try:
            said = self.guard("confirm", armed["token"])
        except DeviceError as err:
            if "last: reverted" in err.message:
                raise DeviceError("lost", "management came back only after the router had reverted the change "
                                  "(not confirmed in time)") from None
            raise
        if not said.startswith("confirmed"):
            raise DeviceError("rejected", f"ctfleet-guard did not confirm: {said!r}")
        out = self._send("write memory")
        if "[OK]" not in out and "saved" not in out.lower():
            raise DeviceError("rejected", f"write memory did not confirm saving: {mask(out)[-200:]!r}")

    def revert(self, armed: ArmedDict) -> None:
        self.guard("revert", armed["token"])

    def pending(self) -> PendingDict:
        said = self.guard("status")
        words = said.split()
        if words and words[0] == "armed":
            return PendingDict(armed=True, token=words[1], seconds_left=int(words[2]), last=None)
        return PendingDict(armed=False, token=None, seconds_left=None, last=said.partition(" ")[2] or None)

    def close(self) -> None:
        try:
            self.conn.disconnect()
        except Exception:  # noqa: BLE001
            pass


def _peek(target: Target, seconds: float = 2.0) -> str:
    """What a device prints when a shell opens (to quote an unexpected prompt); "" if it cannot tell."""
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # diagnostic read only; nothing is sent
    try:
        login = target.login or Login("")
        client.connect(target.address, port=target.port, username=login.username,
                       password=login.password.reveal() if login.password else None, key_filename=login.key_file,
                       timeout=target.connect_timeout, banner_timeout=target.connect_timeout,
                       auth_timeout=target.connect_timeout, look_for_keys=False, allow_agent=False)
        chan = client.invoke_shell()
        chan.settimeout(0.2)
        deadline, buf = time.monotonic() + seconds, b""
        while time.monotonic() < deadline and len(buf) < 4096:
            try:
                data = chan.recv(1024)
                if not data:
                    break
                buf += data
            except socket.timeout:
                continue
        return buf.decode(errors="replace")
    except Exception:  # noqa: BLE001
        return ""
    finally:
        client.close()


class _KeptLog(io.BytesIO):
    """netmiko's session log, kept readable after netmiko closes it (to quote an unexpected prompt)."""

    def close(self) -> None:
        pass


class _Applied(Exception):
    """The change was armed, then applying failed: the caller decides (revert now, or wait for the device)."""

    def __init__(self, armed: ArmedDict, error: DeviceError):
        self.armed = armed
        self.error = error
        super().__init__(str(error))


Applied = _Applied


@dataclass
class Connector:
    """Opens sessions by platform driver; tests replace it (napalm's mock driver, fakes)."""

    napalm_args: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, driver: tuple[str, str | None], target: Target, device_type: str = "cisco_ios") -> RouterSession:
        kind, name = driver
        if kind == "napalm":
            return NapalmSession(name or "ios", target, self.napalm_args)
        if kind == "vtysh":
            return VtyshSession(target, device_type)
        raise DeviceError("platform", f"no driver {kind!r} (valid: napalm, vtysh)")
