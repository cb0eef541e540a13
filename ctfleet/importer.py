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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal

from pydantic import ValidationError

from ctfleet.core.conventions import unit_range
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


def format_help() -> str:
    """The import format, column by column, from the importer's own rules (shown by
    ``ctfleet import --help`` and in the README, which a test keeps equal to this)."""
    low, high = unit_range("Mbit/s")
    link = ", ".join(t.value for t in LinkType)
    backup = ", ".join(t for t in _link_types(False))
    routers = ", ".join(sorted(p.value for p in PLATFORMS_BY_ROLE[Role.ROUTER]))
    hosts = ", ".join(sorted(p.value for p in PLATFORMS_BY_ROLE[Role.SERVER]))
    rows = [
        ("sites", "site_code", "yes", "S- and the CT code with dashes, optionally -suffix: S-01-511-01-01, S-01-511-01-01-annexe; unique, case ignored"),
        ("sites", "ct_code", "yes", "HCP code as text: 01 (region), 01.511 (province), 01.511.01.01 (commune)"),
        ("sites", "name", "yes", "text"),
        ("sites", "uplink_type", "yes", link),
        ("sites", "uplink_mbps", "yes", f"number, {low:,} to {high:,} (dot or, in a ;-separated file, comma for decimals)"),
        ("sites", "backup_type", "no", f"{backup}; empty with backup_mbps for no backup link"),
        ("sites", "backup_mbps", "no", "as uplink_mbps; given exactly when backup_type is"),
        ("devices", "hostname", "yes", "letters, digits, '-' (case folded), at most 63; unique"),
        ("devices", "site_code", "yes", "a site of this import or already in the fleet directory"),
        ("devices", "role", "yes", ", ".join(r.value for r in Role)),
        ("devices", "platform", "yes", f"router: {routers}; server, workstation: {hosts}"),
        ("devices", "os_version", "no", "text, e.g. debian-12"),
        ("devices", "mgmt_address", "no", "unicast IPv4 or IPv6 address, one device each"),
        ("devices", "credentials_ref", "no", "env:NAME, file:/absolute/path or vault:FILE#key - never a password"),
        ("devices", "snmp_version", "no", ", ".join(SNMP_VERSIONS) + " (empty: none)"),
    ]
    width = max(len(c) for _, c, _, _ in rows)
    lines = [f"  {table:<8} {column:<{width}} {req:<4} {what}" for table, column, req, what in rows]
    return "\n".join([
        "Files: .csv (UTF-8; comma- or semicolon-separated) or .xlsx with a sheet named sites and/or devices",
        "(other sheets are ignored; a hidden sites/devices sheet or two sheets for one table are refused).",
        "Row 1 is the header (column names, any case, any order). Codes are typed as text, never as numbers.",
        "",
        f"  {'table':<8} {'column':<{width}} {'req.':<4} valid values",
        *lines,
        "",
        "Every problem of every file is reported at once (file, row, column, what is valid); nothing is",
        "written unless the whole input is valid. The fleet directory is replaced as one unit: the new",
        "sites.csv and devices.csv are written beside the old ones and switched in one step.",
    ])


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
        records, delimiter = _csv_records(path)
        return [_table(str(path), records, kind, workbook=False, decimal_comma=delimiter == ";")]
    if suffix in (".xlsx", ".xlsm"):
        return [_table(f"{path}[{name}]", records, name, workbook=True) for name, records in _xlsx_sheets(path, kind)]
    raise InputError(Problem(str(path), f"unsupported file type {path.suffix or '(none)'!r}", valid=".csv or .xlsx"))


def _csv_records(path: Path) -> tuple[list[list[str]], str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(Problem(str(path), "file not found")) from None
    except IsADirectoryError:
        raise InputError(Problem(str(path), "is a directory, not a CSV file")) from None
    except OSError as exc:
        raise InputError(Problem(str(path), f"cannot read: {exc.strerror}")) from None
    return _csv_records_of(str(path), data)


def _csv_records_of(display: str, data: bytes) -> tuple[list[list[str]], str]:
    """The records of a CSV file and its delimiter (``,``, or ``;`` as French-locale Excel saves)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(Problem(display, f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                                 valid="save the sheet as 'CSV UTF-8'")) from None
    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter)
    try:
        return list(reader), delimiter
    except csv.Error as exc:
        raise InputError(Problem(display, f"malformed CSV: {exc}", line=reader.line_num,
                                 valid="values separated by commas, quotes closed")) from None


def _delimiter(text: str) -> str:
    """``;`` for what French-locale Excel saves as "CSV" (a header with semicolons and no comma), else ``,``."""
    header = text.split("\n", 1)[0]
    return ";" if ";" in header and "," not in header else ","


MAX_CELLS = 5_000_000  # ~100,000 rows of the widest table with room to spare; a workbook beyond is not a fleet


def _xlsx_sheets(path: Path, kind: Kind | None) -> list[tuple[Kind, list[list[str]]]]:
    import openpyxl  # only needed for workbooks

    books = []
    try:
        # Two streaming reads: cached values, and formulas (to name a formula that has no saved value).
        for data_only in (True, False):
            books.append(openpyxl.load_workbook(path, read_only=True, data_only=data_only))
    except FileNotFoundError:
        raise InputError(Problem(str(path), "file not found")) from None
    except Exception as exc:  # noqa: BLE001 - zipfile, XML and openpyxl errors alike: the file is not a workbook we can read
        for wb in books:
            wb.close()
        raise InputError(Problem(str(path), f"not a readable XLSX workbook ({type(exc).__name__}: {str(exc)[:200]})",
                                 valid="a workbook saved by Excel or LibreOffice as .xlsx")) from None
    values, formulas = books
    try:
        return [(k, _sheet_records(path, values[title], formulas[title])) for k, title in _chosen_sheets(path, values, kind)]
    finally:
        values.close()
        formulas.close()


def _chosen_sheets(path: Path, wb, kind: Kind | None) -> list[tuple[Kind, str]]:
    """The sheet to read for each wanted table; two sheets for one table, or a hidden one, are refused."""
    by_kind: dict[Kind, list] = {k: [ws for ws in wb.worksheets if ws.title.strip().lower() == k] for k in KINDS}
    wanted = [kind] if kind else [k for k in KINDS if by_kind[k]]
    missing = [k for k in wanted if not by_kind[k]]
    if not wanted or missing:
        raise InputError(Problem(str(path), f"no sheet named {' or '.join(missing or KINDS)}",
                                 valid=f"sheets named sites and/or devices (found: {', '.join(ws.title for ws in wb.worksheets)})"))
    problems = []
    for k in wanted:
        sheets = by_kind[k]
        hidden = lambda ws: " (hidden)" if ws.sheet_state != "visible" else ""  # noqa: E731
        if len(sheets) > 1:
            names = " and ".join(f"{ws.title!r}{hidden(ws)}" for ws in sheets)
            problems.append(Problem(str(path), f"sheets {names} both name the {k} table",
                                    valid="one sheet named sites and one named devices; rename or delete the other"))
        elif hidden(sheets[0]):
            problems.append(Problem(str(path), f"sheet {sheets[0].title!r} is hidden", valid="unhide the sheet to import it, or delete it"))
    if problems:
        raise InputErrors(problems) if len(problems) > 1 else InputError(problems[0])
    return [(k, by_kind[k][0].title) for k in wanted]


def _sheet_records(path: Path, values_ws, formulas_ws) -> list[list[str]]:
    """The sheet's rows as text, read to the real data extent (a stray far cell or thousands of styled
    empty rows cost nothing: the declared dimension is ignored and empty cells are not padded)."""
    values_ws.reset_dimensions()
    formulas_ws.reset_dimensions()
    records, cells = [], 0
    for value_row, formula_row in zip(values_ws.iter_rows(), formulas_ws.iter_rows()):
        cells += len(value_row)
        if cells > MAX_CELLS:
            raise InputError(Problem(f"{path}[{values_ws.title}]", f"more than {MAX_CELLS:,} cells", line=len(records) + 1,
                                     valid="one sheet of sites or devices; delete stray content far right or below"))
        records.append([_cell_text(v, f) for v, f in zip(value_row, formula_row)])
    while records and not any(records[-1]):
        records.pop()
    return records


class Odd(str):
    """A cell whose text is not what the person meant (a date, a formula with no value, a number in a
    code column); :func:`_table` reports it once it knows the column."""

    def __new__(cls, text: str, kind: str, original: str):
        self = super().__new__(cls, text)
        self.kind, self.original = kind, original
        return self


def _cell_text(cell, formula_cell=None) -> str:
    """A cell as the text a person typed: ``100.0`` -> ``"100"``, empty -> ``""``."""
    import datetime

    value = getattr(cell, "value", cell)
    if value is None:
        formula = getattr(formula_cell, "value", None)
        if getattr(formula_cell, "data_type", None) == "f" and isinstance(formula, str):
            return Odd("?", "formula", formula[:60])
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        shown = value.date().isoformat() if isinstance(value, datetime.datetime) and value.time() == datetime.time() else value.isoformat()
        return Odd(shown, "date", shown)
    if isinstance(value, (int, float)):
        text = _number_text(value)
        return Odd(text, "number", text)
    return str(value).strip()


def _number_text(value: float) -> str:
    """``100.0`` -> ``"100"``, ``2.5`` -> ``"2.5"``, ``1e308`` -> ``"1e+308"`` (never a 309-digit integer)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value)) if isinstance(value, float) else str(value)


#: Columns that hold codes: a number there lost its leading zeros (01.511 -> 1.511).
CODE_COLUMNS = ("ct_code", "site_code")


def _table(display: str, records: list[list[str]], kind: Kind | None, workbook: bool,
           allow_empty: bool = False, decimal_comma: bool = False) -> tuple[Kind, list[Row]]:
    if not records or not any(c.strip() for c in records[0]):
        raise InputError(Problem(display, "no header row", line=1, valid=_header_help()))
    width = len(records[0])
    header = [c.strip().lower() for c in records[0]]
    while header and not header[-1]:  # spreadsheets pad rows with empty cells
        header.pop()
    if workbook and "" in header:  # a value far right of the header, past empty cells
        stray = next(i for i in range(header.index(""), len(header)) if header[i])
        raise InputError(Problem(display, f"a value right of the header's last column, in column {_column_letter(stray)} "
                                          f"({records[0][stray].strip()[:40]!r})", line=1, valid="nothing right of the header's columns"))
    kind = kind or _detect_kind(display, header)
    _check_header(display, header, kind)
    problems, rows = [], []
    for line, record in enumerate(records[1:], start=2):
        cells = [c if isinstance(c, Odd) else c.strip() for c in record]
        if not any(cells):
            continue  # blank row
        misfit = _misfit(cells, header, width, workbook)
        if misfit:
            valid = "values only under the header's columns" if workbook else "one value per header column (quote values that contain commas)"
            problems.append(Problem(display, misfit, line=line, valid=valid))
            continue
        cells += [""] * (len(header) - len(cells))
        values = dict(zip(header, cells))
        odd = [p for p in (_odd_problem(display, line, c, v) for c, v in values.items()) if p]
        if odd:
            problems.extend(odd)
            continue
        if decimal_comma:
            values = {c: _decimal_point(v) if c in NUMBER_COLUMNS else v for c, v in values.items()}
        rows.append(Row(display, line, {c: str(v) for c, v in values.items()}))
    if problems:
        raise InputErrors(problems)
    if not rows and not allow_empty:
        raise InputError(Problem(display, "no data rows under the header", valid="one row per site or device"))
    return kind, rows


NUMBER_COLUMNS = ("uplink_mbps", "backup_mbps")


def _decimal_point(text: str) -> str:
    """``2,5`` -> ``2.5`` in a semicolon-separated file, where the comma can only be a decimal comma."""
    return text.replace(",", ".") if re.fullmatch(r"-?\d+,\d+", text) else text


def _column_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


def _odd_problem(display: str, line: int, column: str, value: str) -> Problem | None:
    if not isinstance(value, Odd):
        return None
    if value.kind == "formula":
        return Problem(display, f"the cell is a formula ({value.original}) with no saved value", line=line, column=column,
                       valid="open and save the file in Excel or LibreOffice, or type the value")
    if value.kind == "date":
        return Problem(display, f"the cell holds a date ({value.original}), not text", line=line, column=column,
                       valid="format the column as Text before typing; a spreadsheet turns some text into dates")
    if value.kind == "number" and column in CODE_COLUMNS:
        example = "01.511.01.01" if column == "ct_code" else "S-01-511-01-01"
        return Problem(display, f"{value.original} is stored as a number, so a leading zero is lost", line=line, column=column,
                       valid=f"format the column as Text and type the code, e.g. {example}")
    return None


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
    existing_sites = list(existing_sites)
    existing_spelling = {s.code.lower(): s.code for s in existing_sites}
    for site, row in sites:
        spelled = existing_spelling.get(site.code.lower(), site.code)
        if spelled != site.code:
            problems.append(row.problem("site_code", f"site code {site.code!r} differs only by case from {spelled!r}, already in the fleet",
                                        valid="the same spelling to update it, or another code"))
    known_sites = {s.code for s in existing_sites} | {s.code for s, _ in sites}
    devices = _validate_devices(list(device_rows), known_sites, list(existing_devices), problems)
    if problems:
        raise InputErrors(problems)
    return [s for s, _ in sites], [d for d, _ in devices]


def _validate_sites(rows: list[Row], registry: Registry, problems: list[Problem]) -> list[tuple[Site, Row]]:
    out, first = [], {}  # by the code's lowercase: names derived from it (Ansible groups, namespaces) fold case
    for row in rows:
        before = len(problems)
        code = row.get("site_code")
        if code.lower() in first:
            line, spelled = first[code.lower()]
            how = f"first at row {line}" if spelled == code else \
                f"first at row {line} as {spelled!r}; codes differing only by case name one site"
            problems.append(row.problem("site_code", f"duplicate site code {code!r} ({how})"))
        elif code:
            first[code.lower()] = (row.line, code)
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
        padded = "0" + ct_code
        valid = (f"did you mean {padded!r}? A spreadsheet drops the leading zero of a code stored as a number"
                 if padded in registry.cts else "an HCP code such as 01 (region), 01.511 (province), 01.511.01.0 (commune)")
        p(row.problem("ct_code", f"unknown CT code {ct_code!r}", valid=valid))
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
    low, high = unit_range("Mbit/s")
    try:
        value = float(text)  # "2,5" is refused: it could also be 2500 ("2,500") elsewhere
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) and text.strip().lower().lstrip("+-") in ("inf", "infinity", "nan"):
        value = float("nan")
    if math.isnan(value):
        problems.append(row.problem(column, f"{text!r} is not a number", valid="a number of Mbit/s >= 0 with a dot for decimals, e.g. 20 or 2.5"))
        return None
    if value < 0:
        problems.append(row.problem(column, f"{text} is negative", valid="a number of Mbit/s >= 0"))
        return None
    if value > high:
        problems.append(row.problem(column, f"{text} Mbit/s is out of range", valid=f"{low:,} to {high:,} Mbit/s"))
        return None
    return value + 0.0  # -0.0 -> 0.0


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
        address = ipaddress.ip_address(text)
    except ValueError:
        problems.append(row.problem("mgmt_address", f"{text!r} is not an IP address", valid="an IPv4 or IPv6 address, e.g. 10.4.0.1"))
        return False
    if address.version == 6 and address.ipv4_mapped:  # ::ffff:10.4.0.1 is 10.4.0.1
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast or str(address) == "255.255.255.255":
        problems.append(row.problem("mgmt_address", f"{text!r} is not the address of one device",
                                    valid="a unicast IPv4 or IPv6 address, e.g. 10.4.0.1"))
        return False
    return address


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
        found = _collect(problems, lambda: _table(display, _csv_records_of(display, data)[0], kind, False, allow_empty=True)) \
            if data is not None else (kind, [])
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
