"""The documentation runs: every command shown in README.md and the walk-throughs is executed
against the generated fleet (or, where it needs a service this machine does not run in the
suite — a router lab, a Prometheus, the Pulumi CLI — parsed by the real command-line
parser), and every CT code, hostname and stack name they mention exists.

An example that stops working (a renamed option, a commune code that does not exist, a
host the fleet does not have) fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import ROOT

DOCS = ["README.md", "playbooks/README.md", "ctfleet/routers/README.md", "ctfleet/reports/README.md", "infra/README.md"]
PLACEHOLDERS = re.compile(r"\b(CODE|FILE|SEGMENT|PLAYBOOK|DIR|URL|STACK|R|P|N|H|S)\b|\.\.\.|<[a-z-]+>")


@dataclass(frozen=True)
class Shown:
    doc: str
    line: int
    text: str
    inline: bool = False  # a span in prose: it may show only part of a command line

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def shown_commands() -> list[Shown]:
    """Command lines as a reader sees them: ``$`` lines of console blocks, lines of sh blocks,
    4-space indented ``ctfleet`` lines, and inline `ctfleet ...` spans."""
    out: list[Shown] = []
    for doc in DOCS:
        fence = None
        for n, raw in enumerate((ROOT / doc).read_text(encoding="utf-8").splitlines(), start=1):
            stripped = raw.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else (stripped[3:].strip() or "plain")
                continue
            if fence in ("console",) and stripped.startswith("$ "):
                out.append(Shown(doc, n, stripped[2:]))
            elif fence in ("sh", "bash"):
                if stripped and not stripped.startswith("#"):
                    out.append(Shown(doc, n, re.split(r"\s+#\s", stripped)[0].strip()))
            elif fence == "plain" and stripped.startswith("ctfleet "):
                out.append(Shown(doc, n, re.split(r"\s+#\s", stripped)[0].strip()))
            elif fence is None:
                if raw.startswith("    ctfleet ") or raw.startswith("    $ ctfleet "):
                    out.append(Shown(doc, n, stripped.removeprefix("$ ")))
                for span in re.findall(r"`(ctfleet [^`]+)`", raw):
                    out.append(Shown(doc, n, span, inline=True))
    return [Shown(s.doc, s.line, s.text.removeprefix(".venv/bin/"), s.inline) for s in out if not s.text.startswith("#")]


SHOWN = shown_commands()


def _ctfleet(shown: list[Shown]) -> list[Shown]:
    return [s for s in shown if s.text.startswith("ctfleet ")]


def test_the_docs_show_commands():
    texts = [s.text for s in SHOWN]
    assert len(_ctfleet(SHOWN)) >= 30, texts  # the extraction itself must keep finding them
    assert "ctfleet rollout site.yml --ct 04.281.07.07 --audit" in texts
    assert "ctfleet routers backup" in texts


# ---------------------------------------------------------------- how each command is checked
# Run for real against the generated fleet: everything that needs no service.
RUN = ("registry", "norms", "validate", "inventory", "import", "stacks", "rollout", "playbooks", "equipment")
# Parsed only (the documented line is checked by the real parser, options and all), with why:
NEEDS_SERVICE = {
    "demo": "the whole demo (about 3 minutes): tests/test_demo.py runs it",
    "routers": "a router lab (FRR/IOS over SSH): tests/test_routers_frr.py runs the walk-through's steps",
    "report": "a Prometheus with the rules loaded: tests/test_report.py runs it",
    "collect": "a collector serving /metrics: tests/test_exporter.py",
    "results": "a results service listening on a port: tests/test_results_cli.py runs `results serve` and stops it",
    "playbooks generate": "it rewrites the roles in the repository; tests/test_playbooks.py checks they are current",
    "backups": "booted hosts with restic: tests/test_playbooks_hosts.py",
    "routers schedule": "writes systemd units for a router lab: tests/test_routers_backups.py",
    "rollout deliver": "a region's results service: tests/test_rollout_delivery.py runs it against the real one",
}


def _reader_files(args: list[str]) -> list[str]:
    """Files a command names that the reader makes first (a team's profile, a spreadsheet, pulumi's output)."""
    return [a for a in args if re.search(r"\.(ya?ml|json|xlsx|csv)$", a) and not (ROOT / a).exists()
            and not a.startswith(("site.yml", "workstations.yml", "servers.yml", "routers.yml"))]


def _command_path(args: list[str]):
    """The click command a line names, the names on the way, and its own arguments."""
    from ctfleet.cli.main import app

    cmd = typer.main.get_command(app)  # typer's own (vendored) click classes
    path: list[str] = []
    rest = list(args)
    while rest and rest[0] == "--profile" and len(rest) > 1:  # the main command's own option
        rest = rest[2:]
    while hasattr(cmd, "resolve_command") and rest and not rest[0].startswith("-"):
        ctx = cmd.make_context("ctfleet", [], resilient_parsing=True)
        name, sub, rest2 = cmd.resolve_command(ctx, rest)
        if sub is None:
            break
        path.append(name)
        cmd, rest = sub, rest2
    return cmd, path, rest


def _variants(text: str) -> list[str]:
    """``a | b | c`` alternatives of a synopsis line, each a command of its own."""
    head, _, tail = text.partition(" ")
    if " | " not in text:
        return [text]
    words = text.split(" ")
    first_alt = next(i for i, w in enumerate(words) if w == "|") - 1
    prefix = " ".join(words[:first_alt])
    alts = " ".join(words[first_alt:]).split(" | ")
    return [f"{prefix} {alt.strip()}" for alt in alts]


def synopsis_lines() -> list[Shown]:
    """Lines that cannot run as they are: placeholders, alternatives, prose spans naming a command and its options,
    and commands naming files the reader makes first; their commands and options must exist."""
    return [s for s in _ctfleet(SHOWN) if PLACEHOLDERS.search(s.text) or " | " in s.text or "[" in s.text
            or (s.inline and not s.text.startswith(("ctfleet registry", "ctfleet norms", "ctfleet validate")))
            or _reader_files(shlex.split(s.text))]


@pytest.mark.parametrize("shown", synopsis_lines(), ids=str)
def test_every_synopsis_names_commands_and_options_that_exist(shown):
    """Lines with placeholders (CODE, FILE, ``a | b``, ``[--x]``) cannot run; their commands and options must exist."""
    for variant in _variants(shown.text):
        args = shlex.split(variant.replace("[", " ").replace("]", " ").replace("|", " "))[1:]
        cmd, path, rest = _command_path(args)
        assert path, f"{shown}: no such command"
        options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{shown}: {' '.join(path)} has no option {word} (has {sorted(options)})"


def runnable() -> list[Shown]:
    return [s for s in _ctfleet(SHOWN) if s not in synopsis_lines()]


@pytest.fixture(scope="module")
def import_inputs(tmp_path_factory):
    """The files the README's import example names, made from the import fixtures."""
    import openpyxl

    d = tmp_path_factory.mktemp("import-example")
    good = ROOT / "tests/fixtures/import/good"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "sites"
    import csv

    with open(good / "sites.csv", encoding="utf-8-sig") as fh:
        for row in csv.reader(fh):
            ws.append(row)
    wb.save(d / "sites.xlsx")
    (d / "devices.csv").write_bytes((good / "devices.csv").read_bytes())
    return d


# Run elsewhere, as shown, with the files they name (parsed here by the real parser):
RUN_ELSEWHERE = {
    "ctfleet --profile sdr-04.yaml ": "a region's steps on its own spreadsheet and profile: tests/test_stacks_datapath.py "
                                      "runs infra/README.md's as shown, in a scratch copy of the project",
}


@pytest.mark.parametrize("shown", runnable(), ids=str)
def test_every_documented_command_runs(shown, import_inputs, tmp_path, monkeypatch):
    from ctfleet.cli.main import app

    args = shlex.split(shown.text)[1:]
    elsewhere = next((why for prefix, why in RUN_ELSEWHERE.items() if shown.text.startswith(prefix)), None)
    if elsewhere:
        cmd, path, rest = _command_path(args[2:])  # after --profile FILE
        assert path, f"{shown}: no such command"
        assert cmd.make_context(" ".join(["ctfleet", *path]), rest).params is not None, elsewhere
        return
    cmd, path, rest = _command_path(args)
    assert path, f"{shown}: no such command"
    top = path[0]
    if not rest and (hasattr(cmd, "resolve_command") or any(p.required for p in cmd.params)):
        return  # prose naming a command ("`ctfleet routers`", "`ctfleet stacks plan`"): it exists
    if top in NEEDS_SERVICE or " ".join(path) in NEEDS_SERVICE or path[:2] in (["rollout", "retry"], ["rollout", "collect"]):
        why = NEEDS_SERVICE.get(top) or NEEDS_SERVICE.get(" ".join(path)) or \
            "hosts to reach over SSH: tests/test_playbooks_hosts.py runs rollouts on booted hosts"
        ctx = cmd.make_context(" ".join(["ctfleet", *path]), rest)  # raises on an unknown option or a bad value
        assert ctx.params is not None, why
        return
    assert top in RUN, f"{shown}: neither run nor parsed; add it to RUN or NEEDS_SERVICE"
    if top == "import":  # the README's file names, in a scratch directory; --into a scratch fleet
        monkeypatch.chdir(import_inputs)
        args = [a if not a.startswith("/srv/") else str(tmp_path / Path(a).name) for a in args]
    if path[:2] == ["stacks", "generate"]:
        args += ["--dir", str(tmp_path)]
    if top == "rollout" and "--show-command" not in args:
        args.append("--show-command")  # builds and checks the whole ansible-playbook invocation, runs nothing
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    text = result.output + (result.stderr if result.stderr_bytes else "")
    assert result.exit_code == 0 and not (result.exception and not isinstance(result.exception, SystemExit)), \
        f"{shown} failed ({result.exit_code}):\n{text}\n{result.exception!r}"


def test_the_readme_ansible_commands_run(tmp_path):
    """The README's ansible-inventory lines, as shown (PATH=$PWD/.venv/bin:$PATH ...), from the project root, with
    region 01's profile (the README's "Profiles": the same inventory limited to a region; the national one takes
    ~40 s per call on a loaded 2-core machine, and tests/test_ansible_inventory.py covers it)."""
    lines = [s for s in SHOWN if "ansible-inventory" in s.text and s.doc == "README.md"]
    assert len(lines) == 2, lines
    profile = tmp_path / "region-01.yaml"
    profile.write_text("name: tanger\nregion: '01'\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("CTFLEET_ROOT",)}
    env["CTFLEET_PROFILE"] = str(profile)
    for shown in lines:
        run = subprocess.run(["bash", "-c", shown.text], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, f"{shown}:\n{run.stderr[-2000:]}"
        if "--host" in shown.text:
            assert '"ctfleet_ct": "01.511.01.01"' in run.stdout
        else:
            assert "@lot_1" in run.stdout and "@ct_01_511_01_01" in run.stdout


def test_other_shown_commands_are_accounted_for():
    """Commands that are not ctfleet's own: each is executed elsewhere or cannot run here, and says why."""
    accounted = {
        "scripts/demo": "the demo itself (tests/test_demo.py runs ctfleet demo)",
        "scripts/test": "the whole suite: CI runs it",
        "PATH=": "test_the_readme_ansible_commands_run",
        "python -m ctfleet.lab.frr_lab": "the FRR lab: tests/test_routers_frr.py starts it",
        ". /tmp/rtr-lab/lab.env": "the lab's environment (same)",
        "git -C /tmp/rtr-lab/backups": "the backup repository: tests/test_routers_frr.py reads its log",
        "curl -fsSL https://get.pulumi.com": "installing the Pulumi CLI: it cannot be installed on these machines",
        'export PATH="$HOME/.pulumi/bin': "(same)",
        "pulumi ": "the Pulumi CLI cannot be installed here (tests/test_stacks_mocks.py, test_stacks_analyzer.py)",
        "python -m ctfleet.reports.dashboards": "the same as ctfleet report dashboards",
        "install ": "test_the_grafana_provisioning_commands_run",
        "export ANSIBLE_VAULT_PASSWORD_FILE=": "the operator's vault password file (backups escrow, parsed above)",
        "systemctl restart grafana-server": "restarts the operator's Grafana (not on this machine)",
        "for f in monitors/dashboards/*.json": "Grafana's HTTP API: needs a Grafana server (not a Debian 12 package)",
        "jq ": "(same loop)",
        "curl ": "(same loop)",
        "-X POST": "(same loop)",
        "done": "(same loop)",
        "infra/images/build all": "tests/test_stacks_images.py runs it and the images it builds",
        "podman tag ": "publishing to the team's registry: no registry is reachable here, no test pushes",
        "podman push ": "(same)",
    }
    other = [s for s in SHOWN if not s.text.startswith("ctfleet ")]
    for s in other:
        assert any(s.text.startswith(k) for k in accounted), f"{s}: not executed by any test; run it here or say why"


def test_the_grafana_provisioning_commands_run(tmp_path):
    """The reports walk-through's `install` lines, with the system paths under a scratch root (as a DESTDIR)."""
    lines = [s for s in SHOWN if s.text.startswith("install ")]
    assert len(lines) == 4, lines
    for shown in lines:
        command = re.sub(r"(?<=\s)/(var|etc)/", lambda m: f"{tmp_path}/{m.group(1)}/", shown.text)
        if command.startswith("install -m"):  # the target's directory exists on a Grafana host
            subprocess.run(["mkdir", "-p", str(Path(command.split()[-1]).parent)], check=True)
        run = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, f"{shown}: {run.stderr}"
    assert len(list((tmp_path / "var/lib/grafana/dashboards/ctfleet").glob("*.json"))) >= 3
    assert (tmp_path / "etc/grafana/provisioning/dashboards/ctfleet.yaml").is_file()


# ---------------------------------------------------------------- what the docs name exists
CT_CODE = re.compile(r"(?<![\d.])(\d{2}\.\d{3}(?:\.\d{2}\.\d{1,2})?)(?![\d.])")
HOSTNAME = re.compile(r"\b((?:r|srv\d|ws\d{3})-\d{2}-\d{3}-\d{2}-\d{1,2})\b")
STACK = re.compile(r"(?<![\w.])((?:sdr|sdl|eci)-[a-z][a-z0-9-]*[a-z0-9])(?![\w.-])")


def test_every_code_host_and_stack_the_docs_name_exists(project):
    from ctfleet.stacks.names import stack_index

    stacks = set(stack_index(project.national))
    missing = []
    for doc in DOCS:
        for n, line in enumerate((ROOT / doc).read_text(encoding="utf-8").splitlines(), start=1):
            for code in CT_CODE.findall(line):
                if code not in project.national.cts and code not in project.national.provinces:
                    missing.append(f"{doc}:{n}: CT code {code}")
            for host in HOSTNAME.findall(line):
                if host not in project.registry.devices:
                    missing.append(f"{doc}:{n}: host {host}")
            for stack in STACK.findall(line):
                if stack not in stacks and "<" not in line[line.find(stack) - 1: line.find(stack)]:
                    missing.append(f"{doc}:{n}: stack {stack}")
    assert not missing, "\n".join(missing)


def test_the_readme_import_format_is_the_importers():
    from ctfleet.importer import COLUMNS, format_help

    text = format_help()
    assert text in (ROOT / "README.md").read_text(encoding="utf-8"), "README's import format block is stale: paste format_help()"
    for kind, columns in COLUMNS.items():
        for column in columns:
            assert re.search(rf"^  {kind}\s+{column}\s", text, re.M), f"format_help() does not document {kind}.{column}"
