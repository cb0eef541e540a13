"""Intended router configuration, rendered from the registry and the norms (pure).

A platform's Jinja2 template (``templates/<platform>.j2``) gets the router's identity,
its CT's resolved norms and the region's settings; ``{% call control("RTR-5") %}``
blocks mark which lines serve which control. Rendering gives two texts from one
template: the *display* one, where every secret prints ``<secret>`` (diffs, logs,
reports), and the *device* one with the real values, built only to push and never
written anywhere::

    >>> r = render_intended(spec, variables)                       # doctest: +SKIP
    >>> r.sections["RTR-6"].lines                                  # doctest: +SKIP
    (('banner motd line Acces reserve aux agents habilites de Assilah. ...',),)

Errors name the template and line and what would be valid: a norm the template asks
for that the CT's norms do not have, an undefined variable, too few NTP servers in the
settings for RTR-3, a secret used without ``| secret``.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2

from ctfleet.core.errors import InputError, Problem, one_of
from ctfleet.core.models import CT, Device, Site
from ctfleet.core.norms import Resolved
from ctfleet.core.secrets import MASK, Secret
from ctfleet.routers.configtext import Node, Path as CfgPath, Section, ordered_paths, parse, walk
from ctfleet.routers.platforms import PlatformSpec
from ctfleet.routers.settings import RouterSettings

TEMPLATES = Path(__file__).resolve().parent / "templates"
_OPEN = "#<ctfleet:"
_CLOSE = "#</ctfleet>"


@dataclass(frozen=True)
class SnmpUser:
    """The router's SNMPv3 user, from its credentials reference (JSON with user, auth_key, priv_key)."""

    user: str
    auth_key: Secret
    priv_key: Secret


MASKED_SNMP = SnmpUser(MASK, Secret(""), Secret(""))


@dataclass(frozen=True)
class Rendered:
    text: str
    tree: list[Node]
    sections: dict[str, Section]
    order: tuple[CfgPath, ...]
    template: str


@dataclass(frozen=True)
class RouterVars:
    """What a template may use; built by :func:`router_vars`."""

    device: Device
    ct: CT
    site: Site | None
    norms: Mapping[str, Resolved]  # controls applicable to routers of this CT
    values: Mapping[str, Any]  # region-filled settings + banner
    snmp: SnmpUser | None


def router_norms(resolved: Mapping[str, Resolved]) -> dict[str, Resolved]:
    return {cid: r for cid, r in resolved.items() if r.applicable and "router" in r.control.applies_to}


def router_vars(device: Device, ct: CT, site: Site | None, resolved: Mapping[str, Resolved],
                settings: RouterSettings, snmp: SnmpUser | None = None) -> RouterVars:
    values = settings.for_region(ct.region_code)
    values["banner"] = settings.banner.replace("{ct_name}", ct.name_fr).replace("{ct_code}", ct.code)
    values["snmp_group"] = settings.snmp_group
    return RouterVars(device, ct, site, router_norms(resolved), values, snmp)


class _NormMissing(Exception):
    def __init__(self, control: str):
        self.control = control


def _env(template_dir: Path | None, reveal: bool) -> jinja2.Environment:
    dirs = [str(template_dir)] if template_dir else []
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(dirs + [str(TEMPLATES)]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)

    def secret(value: Any) -> str:
        if not isinstance(value, Secret):
            raise TypeError("the secret filter expects a secret value")
        return value.reveal() if reveal else MASK

    env.filters["secret"] = secret
    return env


def render_intended(spec: PlatformSpec, v: RouterVars, *, reveal: bool = False,
                    template_dir: Path | None = None) -> Rendered:
    """Render the platform's template for one router (see the module docstring)."""
    name = spec.template
    shown = _shown(template_dir, name)
    norms = v.norms

    def norm(cid: str) -> Any:
        if cid not in norms:
            raise _NormMissing(cid)
        return norms[cid].value

    def wants(cid: str) -> bool:
        r = norms.get(cid)
        return r is not None and (r.value is not False)

    if wants("RTR-3") and isinstance(norm("RTR-3"), int) and len(v.values["ntp_servers"]) < norm("RTR-3"):
        raise InputError(Problem("router settings", f"RTR-3 asks CT {v.ct.code} for at least {norm('RTR-3')} NTP servers; "
                                 f"the settings list {len(v.values['ntp_servers'])}", key="ntp_servers",
                                 valid=f"at least {norm('RTR-3')} servers ({norms['RTR-3'].source})"))
    snmp = v.snmp
    if snmp is None:
        if reveal and wants("RTR-2"):
            raise InputError(Problem(f"device {v.device.hostname}", "pushing RTR-2 needs the router's SNMPv3 user, "
                                     f"but its credentials reference {v.device.credentials or '(none)'} could not be resolved",
                                     key="credentials", valid='a reference whose value is JSON {"user", "auth_key", "priv_key"}'))
        snmp = MASKED_SNMP
    ctx = dict(hostname=v.device.hostname, device=v.device, ct=v.ct, site=v.site, norm=norm, wants=wants,
               snmp=snmp, **v.values)
    try:
        text = _env(template_dir, reveal).get_template(name).render(**ctx)
    except jinja2.TemplateNotFound as exc:
        raise InputError(Problem(shown, f"template not found: {exc.name}", valid=f"a file in {template_dir or TEMPLATES}")) from None
    except _NormMissing as exc:
        raise InputError(Problem(shown, f"{v.device.hostname}: the template asks for norm {exc.control!r}, which CT {v.ct.code} "
                                 "does not have among its router norms (unknown or not applicable)",
                                 line=_template_line(exc, name),
                                 valid=one_of(sorted(norms)) + "; guard optional ones with wants('ID')")) from None
    except jinja2.UndefinedError as exc:
        raise InputError(Problem(shown, f"{v.device.hostname}: {exc.message}", line=_template_line(exc, name),
                                 valid="variables " + ", ".join(sorted(ctx)))) from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(Problem(shown, f"template syntax: {exc.message}", line=exc.lineno)) from None
    except TypeError as exc:
        raise InputError(Problem(shown, f"{v.device.hostname}: {exc}", line=_template_line(exc, name))) from None
    if reveal and MASK in text:
        raise InputError(Problem(shown, f"{v.device.hostname}: a secret is used without '| secret' (it would be sent as {MASK})",
                                 valid="{{ snmp.auth_key | secret }}"))
    return split_sections(text, shown)


def _shown(template_dir: Path | None, name: str) -> str:
    base = template_dir if template_dir and (template_dir / name).exists() else TEMPLATES
    path = base / name
    try:
        return str(path.relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        return str(path)


def _template_line(exc: BaseException, name: str) -> int | None:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(name):
            line = frame.lineno
    return line


def split_sections(text: str, template: str = "") -> Rendered:
    """Strip the control markers, remembering which lines each control owns."""
    clean: list[str] = []
    owner: dict[int, tuple[str, bool]] = {}
    current: tuple[str, bool] | None = None
    for line in text.split("\n"):
        s = line.strip()
        if s.startswith(_OPEN):
            cid, _, flag = s[len(_OPEN):-1].partition(":")
            current = (cid, flag == "write-only")
            continue
        if s == _CLOSE:
            current = None
            continue
        if not s:
            continue
        clean.append(line.rstrip())
        if current:
            owner[len(clean)] = current
    body = "\n".join(clean) + "\n"
    tree = parse(body)
    lines: dict[str, list[CfgPath]] = {}
    write_only: dict[str, list[CfgPath]] = {}
    for path, node in walk(tree):
        cid, wo = owner.get(node.lineno, ("base", False))
        bucket = write_only if wo else lines
        bucket.setdefault(cid, [])
        if path not in bucket[cid]:
            bucket[cid].append(path)
    sections = {cid: Section(cid, tuple(lines.get(cid, ())), tuple(write_only.get(cid, ())))
                for cid in dict.fromkeys([*lines, *write_only])}
    # Write-only lines are not in the compared tree.
    wo_paths = {p for ps in write_only.values() for p in ps}
    order = tuple(p for p in ordered_paths(tree) if p not in wo_paths) + tuple(p for p in ordered_paths(tree) if p in wo_paths)
    return Rendered(body, tree, sections, order, template)
