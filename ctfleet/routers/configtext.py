"""Router configuration text: parse, mask secrets, compare and plan a change (pure).

Cisco IOS and FRRouting (vtysh) both print an indented configuration: a top-level
line opens a block, deeper lines belong to it. This module reads such text into a tree
of :class:`Node` and works on *paths*, the tuple of a line's stripped text and its
parents' (``("line vty 0 4", "transport input ssh")``)::

    >>> tree = parse("hostname r1\\n!\\nline vty 0 4\\n transport input ssh\\n!\\nend\\n")
    >>> sorted(paths(tree))
    [('hostname r1',), ('line vty 0 4',), ('line vty 0 4', 'transport input ssh')]

Comments (``!``), ``end``, FRR's ``exit`` lines and the ``Building configuration``
header are not configuration and are dropped; IOS banners (``banner login ^C`` ...
``^C``) are one logical line. :func:`mask` hides passwords, keys and SNMP communities
before a configuration is shown, diffed or written to a backup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from ctfleet.core.secrets import MASK

Path = tuple[str, ...]

_SKIP = re.compile(r"^(!.*|end|exit|exit-vrf|exit-vnc|Building configuration.*|Current configuration.*)$")
_BANNER = re.compile(r"^banner\s+(motd|login|exec|incoming|prompt-timeout|slip-ppp)\s+(\S)")  # IOS: delimiter follows
_VOLATILE = re.compile(r"^(! (Last configuration change|NVRAM config last updated|No configuration change since).*|"
                       r"Current configuration(?: : \d+ bytes|:)|Building configuration\.\.\.|ntp clock-period \d+)$")


@dataclass
class Node:
    key: str  # the stripped text, what comparisons use
    raw: str  # the line as the device printed it (indentation kept), what a candidate re-uses
    children: list["Node"] = field(default_factory=list)
    lineno: int = 0  # 1-based line of the text it was read from


def parse(text: str) -> list[Node]:
    """The configuration as a tree (see the module docstring)."""
    roots: list[Node] = []
    stack: list[tuple[int, Node]] = []  # (indent, node)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        raw = lines[i].rstrip()
        i += 1
        lineno = i
        key = raw.strip()
        if not key or _SKIP.match(key):
            continue
        indent = len(raw) - len(raw.lstrip())
        m = _BANNER.match(key) if indent == 0 else None
        if m and not key.startswith("banner motd line"):
            delim = _banner_delimiter(key, m)
            rest = key[m.end():]
            if delim not in rest:  # multi-line banner: up to the closing delimiter
                body = [raw]
                while i < len(lines):
                    body.append(lines[i].rstrip())
                    i += 1
                    if delim in body[-1]:
                        break
                raw = "\n".join(body)
                key = raw
        node = Node(key, raw, lineno=lineno)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(node)
        stack.append((indent, node))
    return roots


def _banner_delimiter(key: str, m: re.Match) -> str:
    # IOS shows the delimiter as the two characters "^C"; a typed delimiter is one character.
    rest = key[m.start(2):]
    return "^C" if rest.startswith("^C") else rest[0]


def walk(tree: Sequence[Node], parent: Path = ()) -> Iterable[tuple[Path, Node]]:
    for node in tree:
        path = parent + (node.key,)
        yield path, node
        yield from walk(node.children, path)


def paths(tree: Sequence[Node]) -> set[Path]:
    return {p for p, _ in walk(tree)}


def ordered_paths(tree: Sequence[Node]) -> list[Path]:
    return [p for p, _ in walk(tree)]


def show_path(path: Path) -> str:
    """``line vty 0 4 > transport input ssh``: how a path reads in a report."""
    return " > ".join(p.split("\n")[0] + (" ..." if "\n" in p else "") for p in path)


def render(tree: Sequence[Node], style: str = "ios") -> str:
    """Configuration text of a tree; ``style`` ios separates blocks with ``!``, frr closes them with ``exit``."""
    out: list[str] = []

    def emit(nodes: Sequence[Node], depth: int) -> None:
        for n in nodes:
            out.append(n.raw if n.raw.strip() == n.key.strip() and n.raw else " " * depth + n.key)
            if n.children:
                emit(n.children, depth + 1)
                if style == "frr":
                    out.append(" " * depth + "exit")
            if depth == 0 and style == "ios":
                out.append("!")

    emit(tree, 0)
    out.append("end")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- secrets
# Each pattern's group 1 is kept and group 2 is the secret. Ordered: specific first.
SECRET_PATTERNS: tuple[re.Pattern, ...] = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"(\bsnmp-server community\s+)(\S+)",
    r"(\bsnmp-server host\s+\S+(?:\s+(?:informs|traps))?(?:\s+version\s+(?:1|2c))?\s+)(?!version\b)(\S+)",
    r"(\bauth\s+(?:md5|sha\d*)\s+)(\S+)",
    r"(\bpriv\s+(?:des|3des|aes(?:\s+\d+)?)\s+)(\S+)",
    r"(\bmessage-digest-key\s+\d+\s+md5\s+(?:\d+\s+)?)(\S+)",
    r"(\b(?:secret|password)\s+(?:\d+\s+)?)(\S+)",
    r"((?<![\w-])(?:key-string|authentication-key|key)\s+(?:\d+\s+)?)(?!<secret>)(\S+)",
    r"(\bpre-shared-key\s+(?:address\s+\S+\s+)?(?:key\s+)?)(\S+)",
))


def mask(text: str, known: Iterable[str] = (), patterns: bool = True) -> str:
    """Hide passwords, keys and SNMP communities, and every ``known`` secret value.

    >>> mask("snmp-server community s3cr3t RO\\nenable secret 5 $1$abc$xyz\\nusername a privilege 15 password 7 0822")
    'snmp-server community <secret> RO\\nenable secret 5 <secret>\\nusername a privilege 15 password 7 <secret>'
    """
    for value in sorted({k for k in known if k and len(k) >= 4}, key=len, reverse=True):
        text = text.replace(value, MASK)
    if not patterns:  # prose a device printed (a prompt to quote): only the known values
        return text
    out = []
    for line in text.split("\n"):
        for rx in SECRET_PATTERNS:
            line = rx.sub(lambda m: m.group(1) + (m.group(2) if m.group(2) == MASK else MASK), line)
        out.append(line)
    return "\n".join(out)


def stable(text: str) -> str:
    """The configuration without the lines that change on every read (timestamps, byte
    counts), so a backup changes only when the configuration does."""
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").split("\n") if not _VOLATILE.match(ln.strip())]
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip("\n") + "\n"


_LAST_CHANGE = re.compile(r"^! Last configuration change at (?P<at>.+?)(?: by (?P<by>\S+))?\s*$", re.MULTILINE)


def last_change(text: str) -> tuple[str, str | None] | None:
    """IOS's ``! Last configuration change at ... by USER`` header, if present."""
    m = _LAST_CHANGE.search(text)
    return (m["at"], m["by"]) if m else None


# ---------------------------------------------------------------- intended vs running
@dataclass(frozen=True)
class Section:
    """The lines one control requires, as rendered by a platform's template."""

    control: str
    lines: tuple[Path, ...]  # compared with the running configuration
    write_only: tuple[Path, ...] = ()  # sent with the section, never shown back by the device (IOS snmp-server user)


@dataclass(frozen=True)
class ControlDelta:
    control: str
    missing: tuple[Path, ...]  # required by the norm, absent from the router
    stray: tuple[Path, ...]  # on the router, in the control's scope, not required

    @property
    def in_norm(self) -> bool:
        return not self.missing and not self.stray


@dataclass(frozen=True)
class Plan:
    """What a push would change, per control; empty when the router is in its norm."""

    deltas: tuple[ControlDelta, ...]
    add: tuple[Path, ...]  # in intended order; write-only lines of changed sections included
    remove: tuple[Path, ...]  # parents before children; a removed parent's children not repeated
    replace_blocks: tuple[Path, ...] = ()  # ordered blocks (ACLs) rewritten whole

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove

    def delta(self, control: str) -> ControlDelta | None:
        return next((d for d in self.deltas if d.control == control), None)


def plan(running: Sequence[Node], sections: Mapping[str, Section], owned: Mapping[str, Sequence[str]],
         ordered_blocks: Sequence[str] = (), intended_order: Sequence[Path] = ()) -> Plan:
    """Compare the running tree with the intended sections.

    A line is *stray* when it matches one of the control's ``owned`` patterns (regular
    expressions over :func:`show_path`) and the intended configuration does not have it:
    the norm manages that part of the configuration, so a push removes it. Blocks whose
    head matches ``ordered_blocks`` (access lists) are rewritten whole when they differ,
    since their entries' order matters.
    """
    have = paths(running)
    want: set[Path] = {p for s in sections.values() for p in s.lines}
    order = {p: i for i, p in enumerate(intended_order)}
    deltas: list[ControlDelta] = []
    add: list[Path] = []
    remove: list[Path] = []
    for cid, sec in sections.items():
        missing = tuple(p for p in sec.lines if p not in have)
        rxs = [re.compile(r) for r in owned.get(cid, ())]
        stray = tuple(p for p in ordered_paths(running)
                      if p not in want and any(rx.search(show_path(p)) for rx in rxs))
        deltas.append(ControlDelta(cid, missing, stray))
        if missing or stray:
            add.extend(missing)
            add.extend(p for p in sec.write_only if p not in add)
        remove.extend(p for p in stray if p not in remove)
    # Ordered blocks: rewrite whole when their children differ in content or order.
    block_rx = [re.compile(r) for r in ordered_blocks]
    replace: list[Path] = []
    running_children = {p: [c.key for c in n.children] for p, n in walk(running)}
    for head in {p[:1] for p in want}:
        if not any(rx.search(head[0]) for rx in block_rx):
            continue
        intended_children = [p[1] for p in sorted((p for p in want if len(p) == 2 and p[:1] == head), key=lambda p: order.get(p, 0))]
        if head in running_children and running_children[head] != intended_children:
            replace.append(head)
            add.extend(p for p in want if p[:1] == head and p not in add)
    add.sort(key=lambda p: order.get(p, len(order)))
    remove = [p for p in remove if not any(p[:len(r)] == r and p != r for r in remove)]  # parent covers children
    remove = [p for p in remove if not any(p[:len(r)] == r for r in replace)]
    return Plan(tuple(deltas), tuple(dict.fromkeys(add)), tuple(remove), tuple(replace))


def candidate(running: Sequence[Node], change: Plan, style: str = "ios") -> str:
    """The full configuration after the change: the running one, stray lines removed,
    missing lines added (under their parent, created where absent), ordered blocks
    rewritten. Used for IOS ``configure replace`` and to show a diff."""
    import copy

    tree = copy.deepcopy(list(running))
    drop = set(change.remove) | set(change.replace_blocks)

    def prune(nodes: list[Node], parent: Path) -> list[Node]:
        kept = []
        for n in nodes:
            p = parent + (n.key,)
            if p in drop:
                continue
            n.children = prune(n.children, p)
            kept.append(n)
        return kept

    tree = prune(tree, ())
    index = {p: n for p, n in walk(tree)}
    for p in change.add:
        if p in index:
            continue
        parent = index.get(p[:-1]) if len(p) > 1 else None
        if len(p) > 1 and parent is None:  # parent absent: add the chain
            for k in range(1, len(p)):
                if p[:k] not in index:
                    node = Node(p[k - 1], " " * (k - 1) + p[k - 1])
                    (index[p[:k - 1]].children if k > 1 else tree).append(node)
                    index[p[:k]] = node
            parent = index[p[:-1]]
        node = Node(p[-1], " " * (len(p) - 1) + p[-1])
        (parent.children if parent is not None else tree).append(node)
        index[p] = node
    return render(tree, style)


def commands(change: Plan) -> list[str]:
    """Configuration-mode commands that apply a plan line by line (FRR through vtysh).

    >>> ch = Plan((), add=(("line vty",), ("line vty", "access-class CTFLEET-NO-VTY")), remove=(("log stdout",),))
    >>> commands(ch)
    ['no log stdout', 'line vty', 'access-class CTFLEET-NO-VTY', 'exit']
    """
    out: list[str] = []
    for p in change.replace_blocks:
        out.append("no " + p[0])
    for p in change.remove:
        if len(p) == 1:
            out.append("no " + p[0])
        else:
            out.extend([*p[:-1], "no " + p[-1], *["exit"] * (len(p) - 1)])
    opened: Path = ()
    for p in change.add:
        head, leaf = p[:-1], p[-1]
        if head != opened:
            out.extend(["exit"] * len(opened))
            # Re-enter only the parents not just added as a top-level line themselves.
            for k in range(len(head)):
                if not (out and out[-1] == head[k] and k == 0):
                    out.append(head[k])
            opened = head
        if len(p) == 1:
            out.append(leaf)
            opened = ()
            continue
        out.append(leaf)
    out.extend(["exit"] * len(opened))
    # A top-level line immediately followed by its own block's re-entry is sent once.
    dedup: list[str] = []
    for c in out:
        if dedup and c == dedup[-1] and not c.startswith("no ") and c != "exit":
            continue
        dedup.append(c)
    return dedup


def undo(running: Sequence[Node], change: Plan) -> Plan:
    """The plan that takes the router back from after ``change`` to ``running``: what
    was added is removed, what was removed (with its block) is added back. The FRR
    guard replays it before ``frr-reload`` (which will not touch ``line vty``)."""
    have = {p: n for p, n in walk(running)}
    back: list[Path] = []
    for p in (*change.remove, *change.replace_blocks):
        if p in have:
            back.extend(q for q, _ in walk([have[p]], p[:-1]))
    added = [p for p in change.add if p not in have]
    # Remove the added leaves, in their block: an added block head may be a context that
    # cannot be removed (FRR's "line vty"); an empty block is harmless.
    leaves = tuple(p for p in added if not any(q != p and q[:len(p)] == p for q in added))
    return Plan((), add=tuple(dict.fromkeys(back)), remove=leaves)



def reinject(text: str, device_text: str, shown_text: str) -> str:
    """``text`` (a backup to restore) with the secrets ctfleet manages taken from the current
    intended configuration: ``device_text`` is it rendered with the values from the
    credentials references, ``shown_text`` the same with ``<secret>`` in their place. A
    backed-up line that reads like an intended secret-bearing line once masked gets the
    current values (a key rotated since that backup is not rolled back); other lines are
    left as they are (a masked-only backup keeps ``<secret>`` there: the caller refuses it).

    >>> reinject("hostname r1\\n snmp-server user noc G v3 auth sha OLD priv aes 128 OLD2\\n",
    ...          "snmp-server user noc G v3 auth sha NEW priv aes 128 NEW2", "snmp-server user noc G v3 auth sha <secret> priv aes 128 <secret>")
    'hostname r1\\n snmp-server user noc G v3 auth sha NEW priv aes 128 NEW2\\n'
    """
    current: dict[str, str] = {}
    for dl, sl in zip(device_text.split("\n"), shown_text.split("\n")):
        if dl != sl and MASK in sl:
            current[mask(sl.strip())] = dl.strip()
    if not current:
        return text
    out = []
    for line in text.split("\n"):
        new = current.get(mask(line.strip()))
        out.append(line[: len(line) - len(line.lstrip())] + new if new is not None else line)
    return "\n".join(out)


def overwrites(change: Plan, single_valued: Sequence[str]) -> Plan:
    """``change`` without the removals that an added line overwrites anyway: top-level
    commands holding one value (``single_valued`` prefixes, e.g. FRR's ``password ``).

    >>> ch = Plan((), add=(("password new",),), remove=(("password old",), ("ip route 192.0.2.0/24 blackhole",)))
    >>> overwrites(ch, ("password ",)).remove
    (('ip route 192.0.2.0/24 blackhole',),)
    """
    heads = {pre for p in change.add if len(p) == 1 for pre in single_valued if p[0].startswith(pre)}
    kept = tuple(p for p in change.remove if not (len(p) == 1 and any(p[0].startswith(h) for h in heads)))
    return Plan(change.deltas, change.add, kept, change.replace_blocks)
