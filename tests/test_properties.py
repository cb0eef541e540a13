"""Property tests over every loader a person feeds (issue 14): hypothesis-generated CSV and
XLSX rows, YAML norm/profile/CT files, credentials references and CLI arguments.

The property, everywhere: the loader succeeds, or raises the project's one error type naming
the file (and the row, line or key) — never another exception (a traceback), never a hang
(each example is timed), never a partial write (the fleet directory is byte-identical after a
refused import), and never the canary secret planted in the input, in any message.

Bounded for CI: a few dozen examples per property, no shrinking database, about a minute in all.
"""

from __future__ import annotations

import shutil
import string
import time
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from ctfleet.core.errors import CtfleetError, InputError, InputErrors
from ctfleet.importer import DEVICE_COLUMNS, SITE_COLUMNS, import_files

CANARY = "CANARY-9c1e-s3cret"
BOUNDED = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SLOW = settings(BOUNDED, max_examples=10)
PER_EXAMPLE_SECONDS = 15  # a hang shows as a failure, not a stuck CI job


def problems(exc: CtfleetError) -> list:
    if isinstance(exc, InputErrors):
        return exc.problems
    if isinstance(exc, InputError):
        return [exc.problem]
    return []


def check_error(exc: CtfleetError, files: set[str], echoing: set[str] = frozenset()) -> None:
    """One error naming the input; the canary appears in no message, except a message about a column
    in ``echoing`` (a site's name, a link type: quoting what was typed there helps, it is no secret)."""
    found = problems(exc)
    assert found, f"{type(exc).__name__} with no problem: {exc}"
    for p in found:
        assert any(p.file.startswith(f) for f in files), f"problem names no input file: {p}"
        if p.column not in echoing:
            assert CANARY not in str(p), str(p)
    if not echoing:
        assert CANARY not in str(exc) + repr(exc)


#: Columns whose bad values an error quotes back; credentials_ref is never among them.
ECHOING = set(SITE_COLUMNS + DEVICE_COLUMNS) - {"credentials_ref"}


# ---------------------------------------------------------------- cells a person types
SPECIAL = ["", " ", "[/]", "[bold]x", "a,b", 'a"b', "a;b", "\n", "01", "1e308", "-1", "nan", "inf", "2,5", "::ffff:10.4.0.1",
           "S-01-511-01-01", "S-01-511-01-01-ANNEXE", "01.511.01.01", "1.511.01.01", "router", "server", "cisco_ios", "debian",
           "adsl", "none", "v3", f"env:{CANARY}", CANARY, f"file:{CANARY}", "env:CTFLEET_X", "10.4.0.1", "r-01-511-01-01",
           "é", "طنجة", "\ufeff", "=1+1", "\x00"]
cell = st.one_of(st.sampled_from(SPECIAL), st.text(alphabet=string.printable + "éطنجة", max_size=12))


def row_for(columns: list[str]):
    base = {"site_code": "S-01-511-01-01", "ct_code": "01.511.01.01", "name": "Assilah", "uplink_type": "adsl",
            "uplink_mbps": "8", "backup_type": "", "backup_mbps": "", "hostname": "r-01-511-01-01", "role": "router",
            "platform": "cisco_ios", "os_version": "ios", "mgmt_address": "10.4.0.1", "credentials_ref": "env:CTFLEET_X",
            "snmp_version": "v3"}
    return st.fixed_dictionaries({c: st.one_of(st.just(base[c]), cell) for c in columns})


@pytest.fixture(scope="module")
def registry(registry_only):
    return registry_only.national


@pytest.fixture(scope="module")
def existing_fleet(tmp_path_factory, registry):
    """A fleet directory every refused import must leave byte-identical."""
    d = tmp_path_factory.mktemp("fleet-prop")
    fleet = d / "fleet"
    import_files([ROOT / "tests/fixtures/import/good/sites.csv", ROOT / "tests/fixtures/import/good/devices.csv"], registry, fleet)
    return fleet


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _csv_text(columns: list[str], rows: list[dict], delimiter: str) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([r[c] for c in columns])
    return buf.getvalue()


@BOUNDED
@given(kind=st.sampled_from(["sites", "devices"]), rows=st.data(), delimiter=st.sampled_from([",", ";"]),
       drop=st.integers(0, 3), garble=st.booleans())
def test_csv_import_succeeds_or_names_file_and_row(kind, rows, delimiter, drop, garble, tmp_path, registry, existing_fleet):
    columns = list(SITE_COLUMNS if kind == "sites" else DEVICE_COLUMNS)
    columns = columns[: len(columns) - drop] if kind == "devices" else columns
    data = rows.draw(st.lists(row_for(columns), min_size=0, max_size=4))
    text = _csv_text(columns, data, delimiter)
    if garble:
        text = text.replace('"', "", 1) + rows.draw(st.sampled_from(["", "x,y\n", '"\n', "\x00", "a" * 300]))
    path = tmp_path / f"{kind}.csv"
    path.write_text(text, encoding="utf-8")
    fleet = tmp_path / "fleet"
    if fleet.exists():
        shutil.rmtree(fleet)
    shutil.copytree(existing_fleet, fleet)
    before = snapshot(fleet)
    started = time.monotonic()
    try:
        import_files([path], registry, fleet)
    except CtfleetError as exc:
        check_error(exc, {str(path), str(fleet)}, ECHOING)
        assert snapshot(fleet) == before, "a refused import changed the fleet directory"
    assert time.monotonic() - started < PER_EXAMPLE_SECONDS
    assert not list(tmp_path.glob(".fleet.new-*")), "no staging directory is left behind"


xlsx_cell = st.one_of(cell, st.none(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                      st.booleans(), st.dates(), st.datetimes(), st.sampled_from(["=1+1", "=A1", "=NOW()"]))


@SLOW
@given(rows=st.lists(st.lists(xlsx_cell, min_size=0, max_size=9), min_size=0, max_size=4), hidden=st.booleans(),
       title=st.sampled_from(["sites", "Sites ", "devices", "SITES", "feuil1"]), stray=st.booleans())
def test_xlsx_import_succeeds_or_names_file_and_row(rows, hidden, title, stray, tmp_path, registry):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    ws.append(SITE_COLUMNS if "site" in title.lower() else DEVICE_COLUMNS)
    for r in rows:
        ws.append([c.replace("\x00", "") if isinstance(c, str) else c for c in r])
    if stray:
        ws["XFD3"] = CANARY
    if hidden:
        ws.sheet_state = "hidden"
        wb.create_sheet("visible")
    path = tmp_path / "fleet.xlsx"
    try:
        wb.save(path)
    except Exception:  # noqa: BLE001 - openpyxl refuses some values (illegal characters): nothing to import then
        return
    started = time.monotonic()
    try:
        import_files([path], registry, tmp_path / "out")
    except CtfleetError as exc:
        check_error(exc, {str(path)}, ECHOING)
        assert not (tmp_path / "out").exists()
    assert time.monotonic() - started < PER_EXAMPLE_SECONDS


# ---------------------------------------------------------------- YAML files a person edits
yaml_scalar = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                        st.text(max_size=10), st.sampled_from(["04", "1e999", ".nan", "-.inf", "*a", "&a x", "!!python/object x",
                                                               "2024-12-01", "~", "[", "{", "'", '"', "\t", "? x", CANARY]))
yaml_value = st.recursive(yaml_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                          max_leaves=12)


def yaml_text(value) -> str:
    import io

    from ruamel.yaml import YAML

    y = YAML(typ="safe")
    buf = io.StringIO()
    try:
        y.dump(value, buf)
    except Exception:  # noqa: BLE001 - some generated values cannot be dumped: use their repr as raw text
        return repr(value)
    return buf.getvalue()


@pytest.fixture(scope="module")
def standards_copy(tmp_path_factory):
    d = tmp_path_factory.mktemp("standards")
    shutil.copytree(ROOT / "standards", d / "standards")
    return d


@BOUNDED
@given(body=st.one_of(yaml_value.map(yaml_text), st.text(max_size=200)),
       prefix=st.sampled_from(["", "values:\n  ", "values:\n  LNK-1: ", "not_applicable: ", "description: "]),
       where=st.sampled_from(["norms/ct/01.511.01.01.yaml", "norms/segments/commune_15k_50k.yaml", "norms/lots/lot-3.yaml"]))
def test_norm_files_load_or_name_file_and_line(body, prefix, where, standards_copy, registry_only):
    """One layer file through the loader load_norms hands each layer to (the catalogue loaded once)."""
    from ctfleet.core.norms import _load_layer, problems_error

    target = standards_copy / "standards" / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(prefix + body.replace("\n", "\n  " if prefix.endswith("  ") else "\n"), encoding="utf-8")
    started = time.monotonic()
    found: list = []
    try:
        _load_layer(target, where, lambda p: str(p.relative_to(standards_copy)), registry_only.norms.controls, found)
        if found:
            raise problems_error(found)
    except CtfleetError as exc:
        check_error(exc, {"standards/"})
    assert time.monotonic() - started < PER_EXAMPLE_SECONDS


@BOUNDED
@given(body=st.one_of(yaml_value.map(yaml_text), st.text(max_size=200)),
       prefix=st.sampled_from(["", "region: ", "fleet: ", "fleet: {source: files, dir: ", "name: "]))
def test_profiles_load_or_name_file_and_key(body, prefix, tmp_path):
    from ctfleet.project import load_profile

    path = tmp_path / "profile.yaml"
    path.write_text(prefix + body, encoding="utf-8")
    started = time.monotonic()
    try:
        load_profile(ROOT, path)
    except CtfleetError as exc:
        check_error(exc, {str(path)})
    assert time.monotonic() - started < PER_EXAMPLE_SECONDS


# ---------------------------------------------------------------- credentials references
@BOUNDED
@given(text=st.one_of(st.text(max_size=40), st.sampled_from(["env:", "file:", "vault:", "vault:x", "vault:#k", "env:lower",
                                                             "file:rel/path", "file:/", "vault:/nope#k"]).map(lambda p: p + CANARY),
                      st.just(CANARY)))
def test_credentials_references_never_echo(text, tmp_path):
    from ctfleet.core.secrets import CredentialRef
    from ctfleet.edges.credentials import resolve

    try:
        ref = CredentialRef.parse(text)
    except ValueError as exc:
        assert CANARY not in str(exc)
        if len(text.strip()) >= 4:
            assert text.strip() not in str(exc), f"the refused text is shown back: {exc}"
        return
    try:
        resolve(ref, ROOT, env={"CTFLEET_X": CANARY})
    except CtfleetError as exc:
        assert CANARY not in str(exc).replace(str(ref), ""), str(exc)  # the reference itself may be named, never a value


# ---------------------------------------------------------------- CLI arguments
arg = st.one_of(st.text(alphabet=string.printable.replace("\x0b", "").replace("\x0c", ""), max_size=12),
                st.sampled_from(["04", "4", "13", "04.281", "04.161", "01.511.01.01", "[/]", "--json", "-", "--", "commune_under_15k"]))


@SLOW
@given(argv=st.one_of(
    st.tuples(st.just("registry"), st.just("show"), arg),
    st.tuples(st.just("registry"), st.just("list"), st.sampled_from(["--region", "--province", "--segment", "--lot", "--format"]), arg),
    st.tuples(st.just("norms"), st.just("show"), arg),
    st.tuples(st.just("import"), arg, st.just("--into"), arg),
    st.tuples(st.just("rollout"), arg, st.just("--ct"), arg, st.just("--show-command")),
))
def test_cli_arguments_give_output_or_one_error(argv, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from ctfleet.cli.main import app

    monkeypatch.chdir(tmp_path)  # relative paths the arguments name land in a scratch directory
    profile = tmp_path / "p.yaml"
    profile.write_text(f"region: '01'\nfleet: {{source: files, dir: {ROOT / 'tests/fixtures/import/good'}}}\n")
    started = time.monotonic()
    result = CliRunner().invoke(app, ["--profile", str(profile), *argv])
    assert time.monotonic() - started < 2 * PER_EXAMPLE_SECONDS  # loads the whole project each time
    text = result.output + (result.stderr if result.stderr_bytes else "")
    assert not (result.exception and not isinstance(result.exception, SystemExit)), f"{argv}: {result.exception!r}"
    assert "Traceback" not in text
    assert result.exit_code in (0, 1, 2), (argv, result.exit_code, text)  # 2: the parser's usage error
    if result.exit_code == 1:
        assert text.startswith("error: ") or "error:" in text.splitlines()[-1] or "error: " in text, text
