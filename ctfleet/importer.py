"""The spreadsheet import regional teams use to bring their real sites and devices in.

Input: CSV files (UTF-8, a BOM is fine), one table each, or XLSX workbooks with a sheet
named ``sites`` and/or ``devices`` (other sheets, e.g. instructions, are ignored). The
first row is the header; column names are matched case-insensitively.

``sites`` table::

    site_code,ct_code,name,uplink_type,uplink_mbps,backup_type,backup_mbps,uplink_interface
    S-01-511-01-01,01.511.01.01,Hôtel de la commune d'Assilah,adsl,8,4g,20,name:Dialer0
    S-01-511-01-01-annexe,01.511.01.01,Annexe administrative,4g,10,,,

``uplink_interface`` (optional column) is the router interface of the uplink, for the
collector: ``index:N`` (ifIndex), ``name:NAME`` (ifName or ifDescr) or
``description:REGEX`` (searched in the interface description, ifAlias); empty = the
collector's heuristic chooses.

``devices`` table::

    hostname,site_code,role,platform,os_version,mgmt_address,credentials_ref,snmp_version
    r-01-511-01-01,S-01-511-01-01,router,cisco_ios,ios-15.9,10.4.0.1,env:CTFLEET_SNMP_01,v3

Rules (every problem of every file is reported at once, with the file, the row as the
spreadsheet shows it — header = row 1 — the column, and what would be valid):

- a site code is ``S-`` followed by the slug of its CT's code (dots become dashes), plus
  an optional ``-suffix`` of letters and digits, with at least one letter, for a CT's
  further sites:
  ``S-01-511-01-01``, ``S-01-511-01-01-annexe``. It is unique in the import.
- ``backup_type`` and ``backup_mbps`` are both empty (no backup link) or both given.
- a device's site is in the import or already in the fleet directory; hostnames are
  lowercase letters, digits and ``-`` (case is folded), unique; a management address is
  used by one device only.
- ``credentials_ref`` is a reference (``env:NAME``, ``file:/path``, ``vault:FILE#key``),
  never a password; a value that is not a reference is never shown back.

:func:`import_files` writes only when the whole input is valid: it merges the import
into the fleet directory (same site code or hostname = update) and rewrites
``sites.csv`` and ``devices.csv`` there atomically. :func:`load_fleet_dir` reads them back.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal

from pydantic import ValidationError

from ctfleet.core.errors import InputError, InputErrors, Problem, one_of
from ctfleet.core.models import (PLATFORMS_BY_ROLE, UPLINK_INTERFACE_FORMS, Device, Link, LinkType, Platform, Role, Site,
                                 code_slug, interface_ref_problem)
from ctfleet.core.secrets import CredentialRef
from ctfleet.edges.dirswap import read_files, replace_dir, write_file

if TYPE_CHECKING:
    from ctfleet.core.registry import Registry

Kind = Literal["sites", "devices"]
KINDS: tuple[Kind, ...] = ("sites", "devices")

SITE_COLUMNS = ["site_code", "ct_code", "name", "uplink_type", "uplink_mbps", "backup_type", "backup_mbps"]
OPTIONAL: dict[Kind, list[str]] = {"sites": ["uplink_interface"], "devices": []}  # accepted, written when used
DEVICE_COLUMNS = ["hostname", "site_code", "role", "platform", "os_version", "mgmt_address", "credentials_ref", "snmp_version"]
COLUMNS: dict[Kind, list[str]] = {"sites": SITE_COLUMNS, "devices": DEVICE_COLUMNS}
REQUIRED: dict[Kind, list[str]] = {
    "sites": ["site_code", "ct_code", "name", "uplink_type", "uplink_mbps"],
    "devices": ["hostname", "site_code", "role", "platform"],
}
FILE_NAMES: dict[Kind, str] = {"sites": "sites.csv", "devices": "devices.csv"}

SITE_SUFFIX = r"(-[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*)?"  # a CT's further sites: -annexe, -b2
SITE_CODE = re.compile(r"^S-[0-9]+(-[0-9]+)*" + SITE_SUFFIX + "$")
_SUFFIX = re.compile(SITE_SUFFIX)
HOSTNAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SNMP_VERSIONS = ("v3", "v2c", "v1", "none")
ROLE_ORDER = {r: i for i, r in enumerate(Role)}


@dataclass(frozen=True)
class Row:
    """One data row of a table: where it is (file, row as the spreadsheet shows it) and its cells.

    >>> Row("fleet.xlsx[sites]", 2, {"site_code": "S-01", "ct_code": "01", ...})  # doctest: +SKIP
    """

    file: str
    line: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        return self.values.get(column, "")

    def problem(self, column: str | None, message: str, valid: str | None = None) -> Problem:
        return Problem(self.file, message, line=self.line, column=column, valid=valid)


# ---------------------------------------------------------------- reading tables
def read_table(path: Path | str, kind: Kind | None = None) -> tuple[Kind, list[Row]]:
    """One table: a CSV file, or one sheet of a workbook (``kind`` or its only known sheet).

    >>> read_table("sites-04.csv")                                     # doctest: +SKIP
    ('sites', [Row(file='sites-04.csv', line=2, values={'site_code': 'S-04', ...}), ...])
    """
    tables = read_tables(path, kind)
    if len(tables) > 1:
        raise InputError(Problem(str(path), "workbook has both a sites and a devices sheet; say which one to read",
                                 valid="kind='sites' or kind='devices'"))
    return tables[0]


def read_tables(path: Path | str, kind: Kind | None = None) -> list[tuple[Kind, list[Row]]]:
    """Every table of a file: one for a CSV, one per ``sites``/``devices`` sheet of an XLSX."""
    path = Path(path)
    if kind is not None and kind not in KINDS:
        raise InputError(Problem(str(path), f"unknown table kind {kind!r}", valid=one_of(KINDS)))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return [_table(str(path), _csv_records(path), kind, workbook=False)]
    if suffix in (".xlsx", ".xlsm"):
        return [_table(f"{path}[{name}]", records, name, workbook=True) for name, records in _xlsx_sheets(path, kind)]
    raise InputError(Problem(str(path), f"unsupported file type {path.suffix or '(none)'!r}", valid=".csv or .xlsx"))


def _csv_records(path: Path) -> list[list[str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(Problem(str(path), "file not found")) from None
    except IsADirectoryError:
        raise InputError(Problem(str(path), "is a directory, not a CSV file")) from None
    except OSError as exc:
        raise InputError(Problem(str(path), f"cannot read: {exc.strerror}")) from None
    return _csv_records_of(str(path), data)


def _csv_records_of(display: str, data: bytes) -> list[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(Problem(display, f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                                 valid="save the sheet as 'CSV UTF-8'")) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        return list(reader)
    except csv.Error as exc:
        raise InputError(Problem(display, f"malformed CSV: {exc}", line=reader.line_num,
                                 valid="values separated by commas, quotes closed")) from None


def _xlsx_sheets(path: Path, kind: Kind | None) -> list[tuple[Kind, list[list[str]]]]:
    import openpyxl  # only needed for workbooks

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise InputError(Problem(str(path), "file not found")) from None
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InputError(Problem(str(path), f"not a readable XLSX workbook ({exc})")) from None
    try:
        by_name = {ws.title.strip().lower(): ws for ws in wb.worksheets}
        wanted = [kind] if kind else [k for k in KINDS if k in by_name]
        missing = [k for k in wanted if k not in by_name]
        if not wanted or missing:
            raise InputError(Problem(str(path), f"no sheet named {' or '.join(missing or KINDS)}",
                                     valid=f"sheets named sites and/or devices (found: {', '.join(ws.title for ws in wb.worksheets)})"))
        return [(k, [[_cell_text(v) for v in r] for r in by_name[k].iter_rows(min_row=1, values_only=True)]) for k in wanted]
    finally:
        wb.close()


def _cell_text(value) -> str:
    """A cell as the text a person typed: ``100.0`` -> ``"100"``, empty -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _table(display: str, records: list[list[str]], kind: Kind | None, workbook: bool) -> tuple[Kind, list[Row]]:
    if not records or not any(c.strip() for c in records[0]):
        raise InputError(Problem(display, "no header row", line=1, valid=_header_help()))
    width = len(records[0])
    header = [c.strip().lower() for c in records[0]]
    while header and not header[-1]:  # spreadsheets pad rows with empty cells
        header.pop()
    kind = kind or _detect_kind(display, header)
    _check_header(display, header, kind)
    problems, rows = [], []
    for line, record in enumerate(records[1:], start=2):
        cells = [c.strip() for c in record]
        if not any(cells):
            continue  # blank row
        misfit = _misfit(cells, header, width, workbook)
        if misfit:
            valid = "values only under the header's columns" if workbook else "one value per header column (quote values that contain commas)"
            problems.append(Problem(display, misfit, line=line, valid=valid))
            continue
        cells += [""] * (len(header) - len(cells))
        rows.append(Row(display, line, dict(zip(header, cells))))
    if problems:
        raise InputErrors(problems)
    return kind, rows


def _misfit(cells: list[str], header: list[str], width: int, workbook: bool) -> str | None:
    """Why a row does not fit the header, or None."""
    if workbook:  # a sheet's rows are as long as its used range; only values past the header matter
        return f"row has values right of the last column ({header[-1]})" if any(cells[len(header):]) else None
    # In a CSV a value too many or too few shifts every later column: never guess.
    return f"row has {len(cells)} values but the header has {width} columns" if len(cells) != width else None


def _detect_kind(display: str, header: list[str]) -> Kind:
    if "hostname" in header:
        return "devices"
    if "ct_code" in header or "uplink_type" in header:
        return "sites"
    raise InputError(Problem(display, "cannot tell whether this is a sites or a devices table", line=1, valid=_header_help()))


def _check_header(display: str, header: list[str], kind: Kind) -> None:
    problems = []
    missing = [c for c in REQUIRED[kind] if c not in header]
    if missing:
        problems.append(Problem(display, f"missing column(s) {', '.join(missing)} of a {kind} table", line=1,
                                valid=f"columns {', '.join(COLUMNS[kind])}"))
    unknown = [c for c in header if c not in COLUMNS[kind] and c not in OPTIONAL[kind]]
    if unknown:
        problems.append(Problem(display, f"unknown column(s) {', '.join(repr(c) for c in unknown)} in a {kind} table", line=1,
                                valid=f"columns {', '.join(COLUMNS[kind])}"))
    dupes = sorted({c for c in header if c and header.count(c) > 1})
    if dupes:
        problems.append(Problem(display, f"column(s) {', '.join(dupes)} appear more than once", line=1))
    if problems:
        raise InputErrors(problems)


def _header_help() -> str:
    return f"a sites header ({','.join(SITE_COLUMNS)}) or a devices header ({','.join(DEVICE_COLUMNS)})"


# ---------------------------------------------------------------- validation
def validate_fleet(site_rows: Iterable[Row], device_rows: Iterable[Row], registry: Registry,
                   existing_sites: Iterable[Site] = (), existing_devices: Iterable[Device] = ()) -> tuple[list[Site], list[Device]]:
    """Typed sites and devices from the rows, or :class:`InputErrors` with every problem.

    ``existing_*`` is what the fleet directory already holds: devices may name its sites,
    and a management address may not be taken by another of its devices.
    """
    problems: list[Problem] = []
    sites = _validate_sites(list(site_rows), registry, problems)
    known_sites = {s.code for s in existing_sites} | {s.code for s, _ in sites}
    devices = _validate_devices(list(device_rows), known_sites, list(existing_devices), problems)
    if problems:
        raise InputErrors(problems)
    return [s for s, _ in sites], [d for d, _ in devices]


def _validate_sites(rows: list[Row], registry: Registry, problems: list[Problem]) -> list[tuple[Site, Row]]:
    out, first_row = [], {}
    for row in rows:
        before = len(problems)
        code = row.get("site_code")
        if code in first_row:
            problems.append(row.problem("site_code", f"duplicate site code {code!r} (first at row {first_row[code]})"))
        elif code:
            first_row[code] = row.line
        site = _site(row, registry, problems)
        if site and len(problems) == before:
            out.append((site, row))
    return out


def _site(row: Row, registry: Registry, problems: list[Problem]) -> Site | None:
    p = problems.append
    code, ct_code, name = row.get("site_code"), row.get("ct_code"), row.get("name")
    for column in ("site_code", "ct_code", "name"):
        if not row.get(column):
            p(row.problem(column, "required value is empty"))
    if code and not SITE_CODE.match(code):
        p(row.problem("site_code", f"{code!r} is not a site code", valid="S- and the CT code with dashes, e.g. S-01-511-01-01 or S-01-511-01-01-annexe"))
    if ct_code and ct_code not in registry.cts:
        p(row.problem("ct_code", f"unknown CT code {ct_code!r}",
                      valid="an HCP code such as 01 (region), 01.511 (province), 01.511.01.0 (commune)"))
    elif ct_code and code and SITE_CODE.match(code) and not _belongs(code, ct_code):
        slug = code_slug(ct_code)
        p(row.problem("site_code", f"site code {code!r} does not belong to CT {ct_code}", valid=f"S-{slug} or S-{slug}-<suffix>"))
    uplink = _link(row, "uplink_type", "uplink_mbps", problems, required=True)
    backup = _link(row, "backup_type", "backup_mbps", problems, required=False)
    interface = row.get("uplink_interface") or None
    if interface and interface_ref_problem(interface):
        p(row.problem("uplink_interface", interface_ref_problem(interface), valid=UPLINK_INTERFACE_FORMS))
        return None
    if not (code and ct_code and name and uplink):
        return None
    if interface:
        uplink = uplink.model_copy(update={"interface": interface})
    return Site(code=code, ct_code=ct_code, name=name, uplink=uplink, backup=backup)


def _belongs(site_code: str, ct_code: str) -> bool:
    """``S-01-511-01-0`` and ``S-01-511-01-0-annexe`` belong to CT 01.511.01.0; ``S-01-511-01-01`` does not."""
    own = "S-" + code_slug(ct_code)
    return site_code.startswith(own) and bool(_SUFFIX.fullmatch(site_code[len(own):]))


def _link(row: Row, type_column: str, mbps_column: str, problems: list[Problem], required: bool) -> Link | None:
    kind_text, mbps_text = row.get(type_column), row.get(mbps_column)
    if not required and not kind_text and not mbps_text:
        return None
    kind = mbps = None
    if not kind_text:
        problems.append(row.problem(type_column, "required value is empty" if required else f"{mbps_column} is given but {type_column} is empty",
                                    valid=one_of(_link_types(required))))
    elif kind_text.lower() not in _link_types(required):
        problems.append(row.problem(type_column, f"unknown link type {kind_text!r}", valid=one_of(_link_types(required))))
    else:
        kind = LinkType(kind_text.lower())
    if not mbps_text:
        problems.append(row.problem(mbps_column, "required value is empty" if required else f"{type_column} is given but {mbps_column} is empty",
                                    valid="a number of Mbit/s >= 0, e.g. 20 or 2.5"))
    else:
        mbps = _number(row, mbps_column, problems)
    return Link(type=kind, bandwidth_mbps=mbps) if kind is not None and mbps is not None else None


def _link_types(uplink: bool) -> list[str]:
    # "none" (no link at all) is a state of the uplink; a missing backup is an empty cell.
    return [t.value for t in LinkType if uplink or t != LinkType.NONE]


def _number(row: Row, column: str, problems: list[Problem]) -> float | None:
    text = row.get(column)
    try:
        value = float(text)  # "2,5" is refused: it could also be 2500 ("2,500") elsewhere
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        problems.append(row.problem(column, f"{text!r} is not a number", valid="a number of Mbit/s >= 0 with a dot for decimals, e.g. 20 or 2.5"))
        return None
    if value < 0:
        problems.append(row.problem(column, f"{text} is negative", valid="a number of Mbit/s >= 0"))
        return None
    return value


def _validate_devices(rows: list[Row], known_sites: set[str], existing: list[Device],
                      problems: list[Problem]) -> list[tuple[Device, Row]]:
    out, first_row, address_owner = [], {}, {}
    imported = {r.get("hostname").lower() for r in rows}
    for d in existing:  # addresses of devices this import does not replace
        if d.mgmt_address is not None and d.hostname not in imported:
            address_owner[d.mgmt_address] = f"{d.hostname} (already in the fleet)"
    for row in rows:
        before = len(problems)
        hostname = row.get("hostname").lower()
        if hostname in first_row:
            problems.append(row.problem("hostname", f"duplicate hostname {hostname!r} (first at row {first_row[hostname]})"))
        elif hostname:
            first_row[hostname] = row.line
        device = _device(row, known_sites, problems)
        if device and device.mgmt_address is not None:
            owner = address_owner.setdefault(device.mgmt_address, f"{hostname} (row {row.line})")
            if not owner.startswith(f"{hostname} "):
                problems.append(row.problem("mgmt_address", f"address {device.mgmt_address} is already used by {owner}"))
        if device and len(problems) == before:
            out.append((device, row))
    return out


def _device(row: Row, known_sites: set[str], problems: list[Problem]) -> Device | None:
    p = problems.append
    hostname, site_code = row.get("hostname").lower(), row.get("site_code")
    for column in ("hostname", "site_code", "role", "platform"):
        if not row.get(column):
            p(row.problem(column, "required value is empty"))
    if hostname and not HOSTNAME.match(hostname):
        p(row.problem("hostname", f"{row.get('hostname')!r} is not a valid hostname",
                      valid="letters, digits and '-', starting with a letter or digit, at most 63 characters"))
    if site_code and site_code not in known_sites:
        p(row.problem("site_code", f"unknown site {site_code!r}",
                      valid="a site_code of the sites table in this import or already in the fleet directory"))
    role = _enum(row, "role", Role, problems)
    platform = _enum(row, "platform", Platform, problems)
    if role and platform and platform not in PLATFORMS_BY_ROLE[role]:
        p(row.problem("platform", f"platform {platform.value!r} is not allowed for a {role.value}",
                      valid=one_of(sorted(x.value for x in PLATFORMS_BY_ROLE[role]))))
    address = _address(row, problems)
    credentials = _credentials(row, problems)
    snmp = row.get("snmp_version").lower() or "none"
    if snmp not in SNMP_VERSIONS:
        p(row.problem("snmp_version", f"unknown SNMP version {row.get('snmp_version')!r}", valid=one_of(SNMP_VERSIONS)))
    if not (hostname and site_code and role and platform) or address is False or credentials is False:
        return None
    try:
        return Device(hostname=hostname, site_code=site_code, role=role, platform=platform, os_version=row.get("os_version"),
                      mgmt_address=address, credentials=credentials, snmp_version=snmp)
    except ValidationError:
        return None  # every field was checked above; the problem is already in the list


def _enum(row: Row, column: str, enum, problems: list[Problem]):
    text = row.get(column)
    if not text:
        return None
    try:
        return enum(text.lower())
    except ValueError:
        problems.append(row.problem(column, f"unknown {column} {text!r}", valid=one_of(e.value for e in enum)))
        return None


def _address(row: Row, problems: list[Problem]):
    """The address, None when empty, or False when invalid (the problem is recorded)."""
    text = row.get("mgmt_address")
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        problems.append(row.problem("mgmt_address", f"{text!r} is not an IP address", valid="an IPv4 or IPv6 address, e.g. 10.4.0.1"))
        return False


def _credentials(row: Row, problems: list[Problem]):
    """The reference, None when empty, or False when invalid. Never echoes the value."""
    text = row.get("credentials_ref")
    if not text:
        return None
    try:
        return CredentialRef.parse(text)
    except ValueError as exc:
        message = str(exc).split("; valid:")[0]
        if text in message:  # some parse errors quote the text: it may be a secret
            message = "value is not a valid credentials reference (not shown, it may be a secret)"
        problems.append(row.problem("credentials_ref", message, valid=CredentialRef.VALID))
        return False


# ---------------------------------------------------------------- the fleet directory
def import_files(paths: Iterable[Path | str], registry: Registry, out_dir: Path | str, dry_run: bool = False) -> dict:
    """Validate every file, then merge into ``out_dir`` and write it; nothing is written on any
    problem (:class:`InputErrors` lists them all), nor with ``dry_run``.

    >>> import_files(["sites-04.csv", "devices-04.xlsx"], registry, "fleet-04")   # doctest: +SKIP
    {'out_dir': 'fleet-04', 'files': ['sites-04.csv', 'devices-04.xlsx'], 'written': True,
     'sites': {'imported': 12, 'added': 10, 'updated': 2, 'total': 40},
     'devices': {'imported': 80, 'added': 80, 'updated': 0, 'total': 300}}
    """
    out_dir = Path(out_dir)
    paths = [Path(p) for p in paths]
    problems: list[Problem] = []
    rows: dict[Kind, list[Row]] = {"sites": [], "devices": []}
    for path in paths:
        for kind, table_rows in _collect(problems, read_tables, path) or []:
            rows[kind].extend(table_rows)
    existing = _collect(problems, _load_existing, out_dir, registry) or ([], [])
    validated = _collect(problems, validate_fleet, rows["sites"], rows["devices"], registry, *existing)
    if problems:
        raise InputErrors(problems)
    sites, devices = validated
    merged_sites, site_counts = _merge(existing[0], sites, key=lambda s: s.code)
    merged_devices, device_counts = _merge(existing[1], devices, key=lambda d: d.hostname)
    if not dry_run:
        write_fleet_dir(out_dir, merged_sites, merged_devices)
    return {"out_dir": str(out_dir), "files": [str(p) for p in paths], "written": not dry_run,
            "sites": site_counts, "devices": device_counts}


def _collect(problems: list[Problem], fn, *args):
    """``fn(*args)``, or None with its problems added to ``problems``."""
    try:
        return fn(*args)
    except InputErrors as exc:
        problems.extend(exc.problems)
    except InputError as exc:
        problems.append(exc.problem)
    return None


def _merge(old: list, new: list, key) -> tuple[list, dict[str, int]]:
    table = {key(x): x for x in old}
    updated = sum(1 for x in new if key(x) in table)
    table.update((key(x), x) for x in new)
    return list(table.values()), {"imported": len(new), "added": len(new) - updated, "updated": updated, "total": len(table)}


def load_fleet_dir(directory: Path | str, registry: Registry) -> tuple[list[Site], list[Device]]:
    """The sites and devices of a fleet directory written by ``ctfleet import`` (both from one version of it)."""
    directory = Path(directory)
    how = f"create it with `ctfleet import FILE --into {directory}`"
    if not directory.is_dir():
        raise InputError(Problem(str(directory), f"fleet directory not found; {how}"))
    return _load_existing(directory, registry, required=how)


def _load_existing(directory: Path, registry: Registry, required: str | None = None) -> tuple[list[Site], list[Device]]:
    """What a fleet directory holds so far; a missing directory (or, unless ``required``, file) is empty."""
    if directory.exists() and not directory.is_dir():
        raise InputError(Problem(str(directory), "is a file, not a fleet directory",
                                 valid="a directory (new or written by ctfleet import) holding sites.csv and devices.csv"))
    if not directory.exists():
        return [], []
    try:
        files = read_files(directory, [FILE_NAMES[k] for k in KINDS])
    except OSError as exc:
        raise InputError(Problem(str(directory), f"cannot read the fleet directory: {exc.strerror}")) from None
    problems: list[Problem] = []
    rows: dict[Kind, list[Row]] = {}
    for kind in KINDS:
        display, data = str(directory / FILE_NAMES[kind]), files[FILE_NAMES[kind]]
        if data is None and required:
            problems.append(Problem(display, f"file not found; {required}"))
        found = _collect(problems, lambda: _table(display, _csv_records_of(display, data), kind, False)) if data is not None else (kind, [])
        rows[kind] = found[1] if found else []
    if problems:
        raise InputErrors(problems) if len(problems) > 1 else InputError(problems[0])
    return validate_fleet(rows["sites"], rows["devices"], registry)


def write_fleet_dir(directory: Path, sites: list[Site], devices: list[Device]) -> None:
    """Write the normalised ``sites.csv`` and ``devices.csv`` (sorted) as one unit: a new directory
    beside the old, switched in one atomic step (:mod:`ctfleet.edges.dirswap`). On a full disk or an
    interruption the previous fleet stays as it was."""
    sites = sorted(sites, key=lambda s: s.code)
    devices = sorted(devices, key=lambda d: (d.site_code, ROLE_ORDER[d.role], d.hostname))
    # the optional uplink_interface column is written only when a site declares one
    columns = SITE_COLUMNS + OPTIONAL["sites"] if any(s.uplink.interface for s in sites) else SITE_COLUMNS

    def write(staging: Path) -> None:
        write_file(staging / FILE_NAMES["sites"], _csv_text(columns, [_site_record(s)[:len(columns)] for s in sites]))
        write_file(staging / FILE_NAMES["devices"], _csv_text(DEVICE_COLUMNS, [_device_record(d) for d in devices]))

    try:
        replace_dir(directory, write)
    except OSError as exc:
        raise InputError(Problem(str(directory), f"cannot write the fleet ({exc.strerror or exc}); the previous fleet is unchanged",
                                 valid="free space or write access where the fleet directory lives")) from None


def _site_record(s: Site) -> list[str]:
    backup = [s.backup.type.value, _mbps(s.backup.bandwidth_mbps)] if s.backup else ["", ""]
    return [s.code, s.ct_code, s.name, s.uplink.type.value, _mbps(s.uplink.bandwidth_mbps), *backup, s.uplink.interface or ""]


def _device_record(d: Device) -> list[str]:
    return [d.hostname, d.site_code, d.role.value, d.platform.value, d.os_version,
            "" if d.mgmt_address is None else str(d.mgmt_address), d.credentials or "", d.snmp_version]


def _mbps(value: float) -> str:
    """``20.0`` -> ``"20"``, ``2.5`` -> ``"2.5"``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _csv_text(header: list[str], records: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(records)
    return buf.getvalue()
