"""Every CLI output renders user text literally: markup characters in every field a person
supplies (HCP names, control titles, site names, file and directory names, arguments) are
shown as written, never parsed by Rich (no MarkupError, nothing swallowed)."""

from __future__ import annotations

import shutil

import openpyxl
import pytest
from typer.testing import CliRunner

from conftest import ROOT, edit

MARK = "[/] [bold]b[/bold] [x"  # a closing tag with nothing open, a real tag pair, and an unclosed bracket
COMMUNE = f"Assilah {MARK}"
REGION = f"Tanger {MARK}"
SITE_NAME = f"Annexe {MARK}"
TITLE_MARK = "[red]Uplink[/red]"


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """A project whose every human-typed field holds markup, with an imported fleet in a directory named with brackets."""
    base = tmp_path_factory.mktemp("marked")
    root = base / "proj"
    root.mkdir()
    shutil.copytree(ROOT / "inventory", root / "inventory", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "standards", root / "standards")
    for name in ("infra", "playbooks", "monitors", "ctfleet.yaml", "ansible.cfg"):
        (root / name).symlink_to(ROOT / name)
    edit(root / "inventory/hcp/communes.csv", "assilah,Assilah,", f'assilah,"{COMMUNE}",')
    edit(root / "inventory/hcp/regions.csv", "01,01,Tanger-Tétouan-Al Hoceima,", f'01,01,"{REGION}",')
    edit(root / "standards/controls.yaml", "title: Uplink bandwidth is at least the segment's minimum",
         f'title: "{TITLE_MARK} bandwidth is at least the minimum"')
    fleet = base / "fleet [/] [b]"
    sheet = base / "fleet [x].xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "sites"
    ws.append(["site_code", "ct_code", "name", "uplink_type", "uplink_mbps"])
    ws.append(["S-01-511-01-01", "01.511.01.01", SITE_NAME, "adsl", 8])
    ds = wb.create_sheet("devices")
    ds.append(["hostname", "site_code", "role", "platform", "mgmt_address"])
    ds.append(["r-01-511-01-01", "S-01-511-01-01", "router", "cisco_ios", "10.4.0.1"])
    wb.save(sheet)
    profile = base / "profile [b].yaml"
    profile.write_text(f"name: 'tanger [b]'\nregion: '01'\nfleet: {{source: files, dir: '{fleet}'}}\n", encoding="utf-8")
    marked = {"root": root, "fleet": fleet, "sheet": sheet, "profile": profile}
    run(marked, "import", str(sheet), "--into", str(fleet))
    return marked


def run(marked, *args, code: int = 0) -> str:
    from ctfleet.cli.main import app

    result = CliRunner().invoke(app, ["--profile", str(marked["profile"]), *args], env={"CTFLEET_ROOT": str(marked["root"]),
                                                                                         "COLUMNS": "250"})
    text = result.output + (result.stderr if result.stderr_bytes else "")
    assert not (result.exception and not isinstance(result.exception, SystemExit)), \
        f"{args}: {type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in text and "MarkupError" not in text, text
    assert result.exit_code == code, f"ctfleet {' '.join(args)} exited {result.exit_code}:\n{text}"
    return text


def test_import_success_table_and_errors_show_names_literally(marked):
    text = run(marked, "import", str(marked["sheet"]), "--into", str(marked["fleet"]))
    assert str(marked["sheet"]) in text.replace("\n", "")
    # an error naming the sheet: file.xlsx[sites]:2 (the sheet name used to be swallowed as a tag)
    bad = marked["sheet"].with_name("bad [y].xlsx")
    wb = openpyxl.load_workbook(marked["sheet"])
    wb["sites"]["E2"] = "fast"
    wb.save(bad)
    text = run(marked, "import", str(bad), "--into", str(marked["fleet"]), code=1)
    assert f"{bad}[sites]:2: column 'uplink_mbps': 'fast' is not a number" in text


@pytest.mark.parametrize("args", [
    ["registry", "show", "01.511.01.01"],
    ["registry", "show", "01.511.01.01", "--json"],
    ["registry", "list", "--province", "01.511"],
    ["registry", "list", "--province", "01.511", "--format", "csv"],
    ["registry", "list", "--province", "01.511", "--format", "json"],
    ["registry", "stats"],
    ["validate"],
    ["norms", "show", "01.511.01.01"],
    ["norms", "controls"],
    ["inventory", "--host", "r-01-511-01-01"],
    ["stacks", "list"],
])
def test_every_output_shows_user_text_as_written(marked, args):
    text = run(marked, *args)
    flat = " ".join(text.split())  # a long line may wrap: compare with whitespace normalised

    def shown(s: str) -> bool:
        return " ".join(s.split()) in flat

    if args[:2] == ["registry", "show"] and "--json" not in args:
        assert shown(COMMUNE) and shown(SITE_NAME) and shown(REGION)
        assert shown(f"[files in {marked['fleet']}]"), "the fleet label (real or simulated) is always visible"
    if args[:2] == ["registry", "list"] and args[-1] not in ("csv", "json"):
        assert shown(COMMUNE)
    if args == ["validate"]:
        assert shown(f"[files in {marked['fleet']}]")
    if args[:2] == ["norms", "show"]:
        assert shown(f"{TITLE_MARK} bandwidth") and shown(COMMUNE)


@pytest.mark.parametrize("args", [
    ["registry", "show", "[/]"],
    ["registry", "show", "[bold]x"],
    ["norms", "show", "[/]"],
    ["registry", "list", "--format", "[/]"],
    ["import", "[/].csv", "--into", "[b]"],
    ["rollout", "site.yml", "--ct", "[/]", "--show-command"],
    ["report", "--lang", "[/]"],
    ["stacks", "plan", "[/]"],
])
def test_markup_in_arguments_is_named_in_the_error(marked, args):
    text = run(marked, *args, code=1)
    assert text.startswith("error: ") and any(m in text for m in ("[/]", "[bold]x", "[b]")), text


def test_router_tables_show_user_text_as_written(marked, tmp_path, monkeypatch):
    settings = tmp_path / "routers [b].yaml"
    settings.write_text("login: env:CTFLEET_RTR_LOGIN_MARKED\nbanner: 'Accès [/] {ct_name}'\n")
    monkeypatch.setenv("CTFLEET_RTR_LOGIN_MARKED", "[/] not json [bold]")
    for command in (["backup", "--backup-repo", str(tmp_path / "b [/]")], ["diff"], ["audit", "--backup-repo", str(tmp_path / "b [/]")]):
        text = run(marked, "routers", *command, "--host", "r-01-511-01-01", "--settings", str(settings), code=1)
        assert "r-01-511-01-01" in text and "credentials" in text
