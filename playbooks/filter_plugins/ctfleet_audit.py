"""Filters for the ctfleet roles' audit mode.

``ctfleet_judge`` judges observations against the norms exactly as
``ctfleet.core.compliance.judge`` does (the test suite checks the two agree on every
operator): it is copied, not imported, because under ``ansible-pull`` the filter runs on
the commune's host, where ctfleet is not installed.

``ctfleet_textfile`` renders a report for node_exporter's textfile collector::

    # HELP ctfleet_audit_control_status 1 for the status of each control at the last audit.
    # TYPE ctfleet_audit_control_status gauge
    ctfleet_audit_control_status{control="SYS-3",severity="high",status="pass"} 1
    ctfleet_audit_control_status{control="SYS-3",severity="high",status="fail"} 0
    ...
    ctfleet_audit_last_run_timestamp_seconds 1.7955e+09
"""

from __future__ import annotations

import ast
import calendar
import re
import time

STATUSES = ("pass", "fail", "unknown", "waived")


def _judge(compare, expected, observed):
    if observed is None:
        return "unknown"
    try:
        if compare == "min":
            ok = observed >= expected
        elif compare == "max":
            ok = observed <= expected
        elif compare == "equal":
            ok = observed == expected
        elif compare == "subset":
            ok = set(map(str, observed)) <= set(map(str, expected))
        elif compare == "superset":
            ok = set(map(str, observed)) >= set(map(str, expected))
        elif compare == "member":
            ok = str(observed) in set(map(str, expected))
        else:
            return "unknown"
    except TypeError:
        return "unknown"
    return "pass" if ok else "fail"


def ctfleet_judge(observed, controls, expected, enabled=None):
    """{control id: observation} -> {control id: result}, for this role's enabled controls.

    An observation is ``{"observed": value, "evidence": "..."}``, optionally with a
    ``status`` that overrides judging (``fail`` when a service is simply absent, ``unknown``
    when a container cannot show the thing at all)::

        {"SYS-5": {"status": "fail", "observed": 6, "expected": 4, "evidence": "sshd -T: maxauthtries 6",
                   "title": "...", "severity": "medium", "topic": "ssh"}}
    """
    out = {}
    for cid, obs in (observed or {}).items():
        if cid not in controls:
            continue  # another role's observation: that role judges it
        if enabled is not None and not _truthy(enabled.get(cid, True)):
            continue
        meta = controls[cid]
        want, seen = _native(expected.get(cid)), _native(obs.get("observed"))
        status = obs.get("status") or _judge(meta["compare"], want, seen)
        out[cid] = {"status": status, "observed": seen, "expected": want,
                    "evidence": str(obs.get("evidence", "")), "title": meta["title"],
                    "severity": meta["severity"], "topic": meta["topic"]}
    return out


def _native(v):
    """A value as the inventory typed it. Debian 12's ansible-core (2.14, what ansible-pull runs on
    a commune host) renders a templated value ('{{ ctfleet_norms["SYS-5"] }}') as the string '4',
    where the controller's keeps 4: without this, 4 <= '4' is a TypeError (judged unknown) and
    '24' >= '8' is false. Strings that are not a Python literal stay as they are."""
    if isinstance(v, str) and v.strip():
        try:
            lit = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return v
        if isinstance(lit, (bool, int, float, list)):
            return lit
    return v


def _truthy(v):
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _label(v):
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def ctfleet_textfile(report):
    results = report.get("results") or {}
    lines = ["# HELP ctfleet_audit_control_status 1 for the status of each control at the last audit.",
             "# TYPE ctfleet_audit_control_status gauge"]
    for cid in sorted(results):
        r = results[cid]
        for st in STATUSES:
            lines.append('ctfleet_audit_control_status{control="%s",severity="%s",status="%s"} %d'
                         % (_label(cid), _label(r.get("severity", "")), st, 1 if r.get("status") == st else 0))
    try:
        ts = calendar.timegm(time.strptime(report.get("observed_at", ""), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        ts = time.time()
    lines += ["# HELP ctfleet_audit_last_run_timestamp_seconds When the last audit ran.",
              "# TYPE ctfleet_audit_last_run_timestamp_seconds gauge",
              "ctfleet_audit_last_run_timestamp_seconds %s" % float(ts)]
    return "\n".join(lines) + "\n"


def ctfleet_capture(text, pattern, default=""):
    """The first group of the first match of ``pattern`` (multi-line mode) in ``text``, else ``default``.

    ``"maxauthtries 6" | ctfleet_capture('^maxauthtries (\\d+)')`` -> ``"6"``
    """
    m = re.search(pattern, str(text or ""), re.MULTILINE)
    return m.group(1) if m else default

# ---------------------------------------------------------------------- effective state
# The readers below judge what the host really does from the output of its own tools
# (sshd -T, nft -j, sudo -l, apt-config, systemctl), the way CIS benchmark audits do.
# Hand-written because no library reads these outputs (python-nftables needs libnftables
# on the controller and only parses; it does not evaluate verdicts). Pure functions of text,
# so tests/test_playbooks.py checks them without hosts.

def _sections(text):
    """``### name`` headers -> {name: body}; a repeated name keeps the first body."""
    out, name, buf = {}, None, []
    for line in str(text or "").splitlines():
        if line.startswith("### "):
            if name is not None and name not in out:
                out[name] = "\n".join(buf)
            name, buf = line[4:].strip(), []
        else:
            buf.append(line)
    if name is not None and name not in out:
        out[name] = "\n".join(buf)
    return out


def _runs(text):
    """``### <context>`` / output / ``### rc=N`` blocks -> [(context, rc, output)] in order."""
    out, ctx, buf = [], None, []
    for line in str(text or "").splitlines():
        if line.startswith("### rc=") and ctx is not None:
            out.append((ctx, int(line[7:].strip() or 1), "\n".join(buf)))
            ctx, buf = None, []
        elif line.startswith("### "):
            ctx, buf = line[4:].strip(), []
        elif ctx is not None:
            buf.append(line)
    return out


def _ranges(ports):
    """[22, 23, 24, 80] -> '22-24, 80'."""
    ports = sorted(set(ports))
    out, start, prev = [], None, None
    for p in ports:
        if start is None:
            start = prev = p
        elif p == prev + 1:
            prev = p
        else:
            out.append(str(start) if start == prev else "%d-%d" % (start, prev))
            start = prev = p
    if start is not None:
        out.append(str(start) if start == prev else "%d-%d" % (start, prev))
    return ", ".join(out)


# ---- sshd ------------------------------------------------------------------------------
_OUTSIDE = "203.0.113.10"  # TEST-NET-3 (RFC 5737): a client from no network of ours


def ctfleet_sshd_args(gathered):
    """The ``-f``/``-o`` options of the running sshd, from its unit's ExecStart argv with the
    variables expanded from the main process's environment (what systemd passed it)::

        ### execstart
        { path=/usr/sbin/sshd ; argv[]=/usr/sbin/sshd -D $SSHD_OPTS ; ... }
        ### environ
        SSHD_OPTS=-o PermitRootLogin=yes

    -> ``["-o", "PermitRootLogin=yes"]``
    """
    sec = _sections(gathered)
    m = re.search(r"argv\[\]=([^;]*)", sec.get("execstart", ""))
    words = (m.group(1) if m else "").split()
    env = dict(line.split("=", 1) for line in sec.get("environ", "").splitlines() if "=" in line)
    expanded = []
    for w in words[1:]:
        expanded += re.sub(r"\$\{?(\w+)\}?", lambda v: env.get(v.group(1), ""), w).split()
    out, i = [], 0
    while i < len(expanded):
        w = expanded[i]
        if w in ("-f", "-o") and i + 1 < len(expanded):
            out += [w, expanded[i + 1]]
            i += 2
            continue
        if w[:2] in ("-f", "-o") and len(w) > 2:
            out += [w[:2], w[2:]]
        i += 1
    return out


def _first_host(pattern):
    """An address a client matching ``pattern`` (CIDR, address or sshd wildcard) could have."""
    import ipaddress

    p = pattern.lstrip("!").strip()
    if not p:
        return None
    if "*" in p or "?" in p:
        p = re.sub(r"[*?]", "1", p)
    try:
        net = ipaddress.ip_network(p, strict=False)
    except ValueError:
        return None
    if net.num_addresses <= 2:
        return str(net.network_address)
    return str(net.network_address + 1)


def ctfleet_sshd_contexts(gathered, admins=(), admin_sources=(), local_ipv4=(), port=22, limit=48):
    """Every connection context sshd's effective configuration must be asked about:
    ``user=U,host=A,addr=A,laddr=L,lport=P`` for each user that matters (root, the
    authorised admins, users and group members named in ``Match`` blocks, local human
    accounts) and each client address that matters (loopback, a peer on each local
    network, each admin source network, each ``Match Address`` network, an outside client).

    ``gathered`` holds ``### config`` (``grep -Hn`` of the Match/Include/option lines of
    the configuration files), ``### passwd`` and ``### group`` (getent).
    """
    sec = _sections(gathered)
    users, addrs = ["root"], ["127.0.0.1"]
    users += [a.get("name") if isinstance(a, dict) else str(a) for a in admins or []]
    groups = {}
    for line in sec.get("group", "").splitlines():
        parts = line.split(":")
        if len(parts) >= 4:
            groups[parts[0]] = [m for m in parts[3].split(",") if m]
    humans = []
    for line in sec.get("passwd", "").splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].isdigit() and 1000 <= int(parts[2]) < 60000 \
                and not parts[6].endswith(("nologin", "false")):
            humans.append(parts[0])
    for line in sec.get("config", "").splitlines():
        m = re.match(r"^[^:]+:\d+:\s*match\s+(.*)$", line, re.IGNORECASE)
        if not m:
            continue
        words = m.group(1).split()
        for key, value in zip(words[::2], words[1::2]):
            key = key.lower()
            for item in value.split(","):
                name = item.lstrip("!")
                if key == "user" and not re.search(r"[*?]", name):
                    users.append(name)
                elif key == "group":
                    users += groups.get(name, [])[:3]
                elif key == "address":
                    addrs.append(_first_host(name))
    users += humans[:8]
    local = []
    for iface in local_ipv4 or []:
        addr, net = iface.get("address"), _first_host("%s/%s" % (iface.get("network"), iface.get("netmask")))
        if addr and not addr.startswith("127."):
            local.append(addr)
            if net == addr:
                import ipaddress
                net = str(ipaddress.ip_address(addr) + 1)
            addrs.append(net)
    addrs += [_first_host(a) for a in admin_sources or []]
    addrs.append(_OUTSIDE)
    users = [u for u in dict.fromkeys(users) if u and re.match(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$", u)]
    addrs = [a for a in dict.fromkeys(addrs) if a]
    laddr = local[0] if local else "127.0.0.1"
    out = ["user=%s,host=%s,addr=%s,laddr=%s,lport=%s" % (u, a, a, laddr, port) for u in users for a in addrs]
    return out[:limit]


def _sshd_source(gathered, option, bad_values):
    """Where a bad value is set: ``file:line 'Option value' (in 'Match ...' at line N)``, and
    the command line's ``-o``."""
    sec = _sections(gathered)
    found, match_of = [], {}
    for line in sec.get("config", "").splitlines():
        m = re.match(r"^([^:]+):(\d+):\s*(\S+)\s*(.*)$", line)
        if not m:
            continue
        path, num, key, value = m.group(1), int(m.group(2)), m.group(3).lower(), m.group(4).strip()
        if key == "match":
            match_of[path] = "Match %s' at line %d" % (value, num)
        elif key == option and value and value.split()[0].lower() in bad_values:
            where = " (in '%s)" % match_of[path] if path in match_of else ""
            found.append("%s:%d '%s %s'%s" % (path, num, m.group(3), value, where))
    args = ctfleet_sshd_args(gathered)
    for flag, value in zip(args[::2], args[1::2]):
        k, _, v = value.partition("=")
        if flag == "-o" and k.lower() == option and v.lower() in bad_values:
            found.append("sshd command line (unit ExecStart) '-o %s'" % value)
    return "; set by " + ", ".join(found) if found else ""


def _sshd_values(runs):
    out = []
    for ctx, rc, text in runs:
        values = {}
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k and k.islower():
                values.setdefault(k, v.strip())
        out.append((ctx, rc, values, text))
    return out


def ctfleet_sshd_effective(runs_text, check, gathered="", expected=None):
    """Judge sshd's effective configuration over every context of :func:`ctfleet_sshd_contexts`.

    ``check``: ``permitrootlogin`` (observed True when every context says ``no``),
    ``password`` (True when no context accepts a password: PasswordAuthentication,
    KbdInteractiveAuthentication and AuthenticationMethods together, and no empty password)
    or ``maxauthtries`` (the largest value of any context). Returns ``{"observed", "evidence"}``.
    """
    parsed = _sshd_values(_runs(runs_text))
    ok = [(c, v) for c, rc, v, _ in parsed if rc == 0 and v]
    if not ok:
        err = next((t.strip() for _, rc, _, t in parsed if t.strip()), "") or "no output"
        return {"observed": None, "evidence": "sshd -T failed in every context: %s" % err[:300]}
    n = len(ok)
    users = sorted({re.search(r"user=([^,]*)", c).group(1) for c, _ in ok})
    addrs = list(dict.fromkeys(re.search(r"addr=([^,]*)", c).group(1) for c, _ in ok))
    scope = "%d contexts (users %s; client addresses %s)" % (n, ", ".join(users), ", ".join(addrs))

    def bad_text(bad, label):
        shown = "; ".join("%s for %s" % (label(v), c.split(",laddr")[0]) for c, v in bad[:3])
        more = " and %d more" % (len(bad) - 3) if len(bad) > 3 else ""
        return shown + more

    if check == "permitrootlogin":
        bad = [(c, v) for c, v in ok if v.get("permitrootlogin") != "no"]
        if not bad:
            return {"observed": True, "evidence": "sshd -T in %s: permitrootlogin no in all" % scope}
        values = {v.get("permitrootlogin", "?") for _, v in bad}
        return {"observed": False, "evidence": "sshd -T: %s (%d of %s)%s" % (
            bad_text(bad, lambda v: "permitrootlogin " + v.get("permitrootlogin", "?")), len(bad), scope,
            _sshd_source(gathered, "permitrootlogin", values))}
    if check == "password":
        def accepts(v):
            methods = v.get("authenticationmethods", "any")
            allowed = methods == "any" or any(m in methods for m in ("password", "keyboard-interactive"))
            return allowed and (v.get("passwordauthentication") == "yes" or v.get("kbdinteractiveauthentication") == "yes"
                                or v.get("permitemptypasswords") == "yes")
        bad = [(c, v) for c, v in ok if accepts(v)]
        if not bad:
            return {"observed": True, "evidence": "sshd -T in %s: no context accepts a password" % scope}
        src = "".join(_sshd_source(gathered, o, {"yes"}) for o in ("passwordauthentication", "kbdinteractiveauthentication",
                                                                      "permitemptypasswords"))
        src += _sshd_source(gathered, "authenticationmethods", {"any"})
        return {"observed": False, "evidence": "sshd -T: %s (%d of %s)%s" % (bad_text(bad, lambda v: "passwordauthentication %s, kbdinteractiveauthentication %s, authenticationmethods %s" % (
            v.get("passwordauthentication", "?"), v.get("kbdinteractiveauthentication", "?"), v.get("authenticationmethods", "?"))),
            len(bad), scope, src)}
    if check == "maxauthtries":
        tries = [(int(v["maxauthtries"]), c) for c, v in ok if v.get("maxauthtries", "").isdigit()]
        if not tries:
            return {"observed": None, "evidence": "sshd -T in %s: no maxauthtries line" % scope}
        worst, ctx = max(tries, key=lambda t: t[0])
        if expected is not None and str(expected).isdigit() and worst <= int(expected):
            return {"observed": worst, "evidence": "sshd -T in %s: maxauthtries at most %d" % (scope, worst)}
        bad = sorted({str(t) for t, _ in tries if expected is None or not str(expected).isdigit() or t > int(expected)})
        return {"observed": worst, "evidence": "sshd -T: maxauthtries %d for %s (%s)%s" % (
            worst, ctx.split(",laddr")[0], scope, _sshd_source(gathered, "maxauthtries", set(bad)))}
    raise ValueError("ctfleet_sshd_effective: unknown check %r (permitrootlogin, password, maxauthtries)" % check)


# ---- nftables --------------------------------------------------------------------------
_ALL_PORTS = frozenset(range(1, 65536))
_PROTO_NUM = {"tcp": 6, "udp": 17}


class _Skip(Exception):
    """The rule cannot match a new inbound connection from another machine."""


def _nft_values(right, sets, table):
    """A match's right-hand side -> a set of values (ints or strings)."""
    if isinstance(right, dict):
        if "set" in right:
            out = set()
            for item in right["set"]:
                out |= _nft_values(item, sets, table)
            return out
        if "range" in right:
            lo, hi = right["range"]
            return set(range(int(lo), int(hi) + 1)) if isinstance(lo, int) else {"%s-%s" % (lo, hi)}
        if "prefix" in right:
            return {"%s/%s" % (right["prefix"].get("addr"), right["prefix"].get("len"))}
        return {str(right)}
    if isinstance(right, list):
        out = set()
        for item in right:
            out |= _nft_values(item, sets, table)
        return out
    if isinstance(right, str) and right.startswith("@"):
        out = set()
        for item in sets.get((table, right[1:]), []):
            out |= _nft_values(item, sets, table)
        return out
    return {right}


def _nft_rule(rule, proto, sets):
    """(ports the rule matches, conditional?, verdict, target chain) for a new inbound
    ``proto`` connection from another machine, or raise _Skip when it cannot match one.
    Conditional: the rule also depends on something else (source address, interface...), so
    it may accept such traffic but does not decide for all of it."""
    ports, conditional, verdict, target = set(_ALL_PORTS), False, None, None
    table = (rule.get("family"), rule.get("table"))
    for expr in rule.get("expr", []):
        if "match" in expr:
            m = expr["match"]
            left, op, values = m.get("left") or {}, m.get("op", "=="), _nft_values(m.get("right"), sets, table)
            neg = op == "!="
            if isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state":
                if ("new" in values) == neg:
                    raise _Skip()
            elif isinstance(left, dict) and "meta" in left and left["meta"].get("key") in ("iif", "iifname"):
                if values == {"lo"} and not neg:
                    raise _Skip()
                if not (values == {"lo"} and neg):
                    conditional = True
            elif isinstance(left, dict) and (("meta" in left and left["meta"].get("key") == "l4proto")
                                             or ("payload" in left and left["payload"].get("field") in ("protocol", "nexthdr"))):
                hit = bool({proto, _PROTO_NUM[proto], str(_PROTO_NUM[proto])} & values)
                if hit == neg:
                    raise _Skip()
            elif isinstance(left, dict) and "payload" in left and left["payload"].get("field") == "dport":
                layer = left["payload"].get("protocol")
                if layer not in ("th", proto):
                    raise _Skip()
                nums = {v for v in values if isinstance(v, int)}
                ports &= (_ALL_PORTS - nums) if neg else nums
            else:
                conditional = True  # source addresses, marks, anything else: part of the traffic only
        elif "accept" in expr:
            verdict = "accept"
        elif "drop" in expr or "reject" in expr:
            verdict = "drop"
        elif "jump" in expr or "goto" in expr:
            verdict, target = ("jump", (expr.get("jump") or expr.get("goto")).get("target"))
        elif "return" in expr:
            verdict = "return"
    return ports, conditional, verdict, target


def _nft_show(value):
    if isinstance(value, dict) and "set" in value:
        return "{%s}" % ", ".join(_nft_show(x) for x in value["set"])
    if isinstance(value, dict) and "range" in value:
        return "%s-%s" % tuple(value["range"])
    if isinstance(value, dict) and "prefix" in value:
        return "%s/%s" % (value["prefix"].get("addr"), value["prefix"].get("len"))
    if isinstance(value, list):
        return "{%s}" % ", ".join(_nft_show(x) for x in value)
    return str(value)


def _nft_text(rule):
    """A short, human reading of a rule for evidence."""
    parts = []
    for expr in rule.get("expr", []):
        if "match" in expr:
            m = expr["match"]
            left = m.get("left")
            if isinstance(left, dict):
                k = next(iter(left))
                inner = left[k] if isinstance(left[k], dict) else {}
                left = " ".join(str(x) for x in (inner.get("protocol") or k, inner.get("field") or inner.get("key")) if x)
            right = _nft_show(m.get("right"))
            parts.append("%s%s %s" % (left, "" if m.get("op") in ("==", "in") else " " + m.get("op", ""), right))
        elif "counter" in expr:
            continue
        else:
            k = next(iter(expr))
            parts.append(k if not isinstance(expr[k], dict) or "target" not in expr[k] else "%s %s" % (k, expr[k]["target"]))
    return "%s %s %s handle %s: '%s'" % (rule.get("family"), rule.get("table"), rule.get("chain"), rule.get("handle"),
                                         " ".join(parts) or "(empty rule)")


def _nft_chain(key, rules_of, proto, pending, sets, openers, depth=0):
    """Walk one chain for the ports in ``pending``; returns (accepted, decided): ports some
    rule may accept, and ports whose fate the chain settles (accepted or dropped for all)."""
    accepted, decided, undecided = set(), set(), set(pending)
    for rule in rules_of.get(key, []):
        if not undecided:
            break
        try:
            ports, conditional, verdict, target = _nft_rule(rule, proto, sets)
        except _Skip:
            continue
        hit = ports & undecided
        if not hit or verdict is None:
            continue
        if verdict == "accept":
            accepted |= hit
            openers.append((rule, proto, hit))
        if verdict == "jump" and depth < 16:
            sub_acc, sub_dec = _nft_chain((key[0], key[1], target), rules_of, proto, hit, sets, openers, depth + 1)
            accepted |= sub_acc
            hit = sub_dec
        if not conditional and verdict in ("accept", "drop", "jump"):
            undecided -= hit
            decided |= hit
        if not conditional and verdict == "return":
            undecided -= hit
    return accepted, decided | (set() if depth else set())


def ctfleet_nft_inbound(text, allowed=()):
    """What the loaded ruleset (``nft -j list ruleset``) does with a new inbound TCP or UDP
    connection from another machine, port by port::

        {"chains": ["inet ctfleet input (policy drop)"], "tcp": [22, 445], "udp": [],
         "all_open": False, "default_deny": True, "extra": [],
         "evidence": "nft -j list ruleset: ..."}

    Every base chain on the input hook must accept a packet for it to pass, so a port is
    open when each of them may accept it (a rule or the chain's policy). ``extra``: the rules
    that open ports outside ``allowed`` (TCP ports), named by table, chain and handle.
    Traffic that only loopback, established connections or ICMP match is left out.
    """
    import json as _json

    try:
        items = _json.loads(text).get("nftables", []) if str(text or "").strip() else []
    except ValueError:
        return {"chains": [], "tcp": ["any"], "udp": ["any"], "all_open": True, "default_deny": False, "extra": [],
                "evidence": "nft -j list ruleset: unreadable output"}
    sets, rules_of, bases = {}, {}, []
    for item in items:
        if "set" in item:
            st = item["set"]
            sets[((st.get("family"), st.get("table")), st.get("name"))] = st.get("elem", [])
        elif "chain" in item:
            ch = item["chain"]
            if ch.get("hook") == "input" and ch.get("family") in ("inet", "ip", "ip6"):
                bases.append(ch)
        elif "rule" in item:
            r = item["rule"]
            rules_of.setdefault((r.get("family"), r.get("table"), r.get("chain")), []).append(r)
    bases.sort(key=lambda c: c.get("prio", 0) if isinstance(c.get("prio"), int) else 0)
    chains = ["%s %s %s (policy %s)" % (c["family"], c["table"], c["name"], c.get("policy", "accept")) for c in bases]
    openers, result = [], {}
    for proto in ("tcp", "udp"):
        open_any = set()
        for family in ("ip", "ip6"):  # a packet meets the inet chains and those of its own family
            open_fam = set(_ALL_PORTS)
            for c in [c for c in bases if c["family"] in ("inet", family)]:
                acc, dec = _nft_chain((c["family"], c["table"], c["name"]), rules_of, proto, _ALL_PORTS, sets, openers)
                if c.get("policy", "accept") == "accept":
                    rest = _ALL_PORTS - dec
                    acc |= rest
                    if rest:
                        openers.append(({"family": c["family"], "table": c["table"], "chain": c["name"], "handle": "-",
                                         "expr": [{"policy": None}, {"accept": None}]}, proto, rest))
                open_fam &= acc
            open_any |= open_fam
        result[proto] = open_any
    allowed_tcp = {int(p) for p in allowed or [] if str(p).isdigit()}
    extra, seen, explained = [], set(), {"tcp": set(), "udp": set()}
    openers.sort(key=lambda o: o[0].get("handle") == "-")  # rules first; a policy only for what no rule opens
    for rule, proto, ports in openers:
        bad = (ports & result[proto]) - (allowed_tcp if proto == "tcp" else set()) - explained[proto]
        explained[proto] |= bad
        desc = _nft_text(rule)
        if bad and (desc, proto) not in seen:
            seen.add((desc, proto))
            extra.append("%s opens %s %s" % (desc, proto, "every port" if len(bad) >= len(_ALL_PORTS) - len(allowed_tcp) else _ranges(bad)))
    all_open = any(len(result[p]) == len(_ALL_PORTS) for p in result)

    def shown(ports):
        return ["any"] if len(ports) == len(_ALL_PORTS) else sorted(ports)
    tcp = shown(result["tcp"])
    udp = shown(result["udp"])
    ev = "nft -j list ruleset: input hook chains %s; new inbound TCP accepted on %s, UDP on %s" % (
        ", ".join(chains) or "none (nothing filters inbound traffic)", "every port" if tcp == ["any"] else (_ranges(tcp) or "none"),
        "every port" if udp == ["any"] else (_ranges(udp) or "none"))
    if extra:
        ev += "; " + "; ".join(extra[:4])
    return {"chains": chains, "tcp": tcp, "udp": udp, "all_open": all_open, "default_deny": bool(bases) and not all_open,
            "extra": extra, "evidence": ev}


# ---- sudo ------------------------------------------------------------------------------
def ctfleet_sudo_grants(text, authorised=(), sudoers=""):
    """Which accounts ``sudo -l -U`` says may run commands, beyond root and ``authorised``.

    ``text``: ``### <account> groups=<g1,g2>`` / ``sudo -l -U <account>`` output / ``### rc=N``
    per account; ``sudoers``: the active lines of /etc/sudoers and /etc/sudoers.d as
    ``grep -Hn`` prints them, to name the line that grants each. Returns {"observed": True
    when nobody else may, "evidence"}.
    """
    names = {a.get("name") if isinstance(a, dict) else str(a) for a in authorised or []} | {"root"}
    grants, checked = [], 0
    lines = [l for l in str(sudoers or "").splitlines() if l.strip()]
    for ctx, _rc, out in _runs(text):
        user = ctx.split()[0]
        groups = set(re.sub(r"^.*groups=", "", ctx).split(",")) if "groups=" in ctx else set()
        checked += 1
        if user in names or "may run the following commands" not in out:
            continue
        cmds = out.split("may run the following commands", 1)[1].split(":", 1)[-1]
        cmds = "; ".join(c.strip() for c in cmds.splitlines() if c.strip())
        why = []
        for l in lines:
            m = re.match(r"^([^:]+:\d+):\s*(\S+)", l)
            if m and (m.group(2) == user or m.group(2) == "ALL" or (m.group(2).startswith("%") and m.group(2)[1:] in groups)):
                why.append("%s '%s'" % (m.group(1), l.split(":", 2)[2].strip()))
        grants.append("%s may run %s%s" % (user, cmds or "commands", " (granted by " + ", ".join(why[:3]) + ")" if why else ""))
    if not checked:
        return {"observed": None, "evidence": "sudo -l -U: no account could be checked (getent passwd empty or sudo absent)"}
    if not grants:
        return {"observed": True, "evidence": "sudo -l -U for %d accounts: only root and %s may use sudo" % (
            checked, ", ".join(sorted(names - {"root"})) or "no admin")}
    return {"observed": False, "evidence": "sudo -l -U: " + "; ".join(grants[:4]) + (
        " and %d more" % (len(grants) - 4) if len(grants) > 4 else "") + "; authorised: %s" % ", ".join(sorted(names - {"root"}))}


# ---- automatic updates -------------------------------------------------------------------
def ctfleet_apt_updates(text):
    """Whether security updates really get installed, from::

        ### package       dpkg-query status of unattended-upgrades
        ### timers        systemctl is-enabled / is-active of apt-daily{,-upgrade}.timer
        ### dump          apt-config dump (APT::Periodic and Unattended-Upgrade keys)
        ### files         grep -Hn of those keys in /etc/apt/apt.conf{,.d}

    Returns {"observed": bool, "evidence": what is missing and which file says so}.
    """
    sec = _sections(text)
    dump = {}
    origins = []
    for line in sec.get("dump", "").splitlines():
        m = re.match(r'^(\S+?)(::)?\s+"(.*)";$', line.strip())
        if not m:
            continue
        key, value = m.group(1), m.group(3)
        if key.lower() in ("unattended-upgrade::origins-pattern", "unattended-upgrade::allowed-origins") and m.group(2):
            origins.append(value)
        else:
            dump.setdefault(key.lower(), value)
    files = sec.get("files", "").splitlines()

    def where(key):
        hits = [l.split(":", 2) for l in files if key.lower() in l.lower()]
        return " (%s)" % ", ".join("%s:%s" % (h[0], h[1]) for h in hits if len(h) == 3) if hits else ""

    problems = []
    if "install ok installed" not in sec.get("package", ""):
        problems.append("unattended-upgrades not installed (dpkg-query: %s)" % (sec.get("package", "").strip() or "unknown"))

    def on(v):
        return v not in ("", "0", "false", "no", "never")
    if not on(dump.get("apt::periodic::enable", "1")):
        problems.append("APT::Periodic::Enable \"%s\"%s" % (dump.get("apt::periodic::enable"), where("APT::Periodic::Enable")))
    for key in ("APT::Periodic::Update-Package-Lists", "APT::Periodic::Unattended-Upgrade"):
        if not on(dump.get(key.lower(), "")):
            problems.append("%s \"%s\"%s" % (key, dump.get(key.lower(), "unset"), where(key) or " (set in no file)"))
    if not any(re.search(r"security", o, re.IGNORECASE) for o in origins):
        problems.append("no security origin in Unattended-Upgrade::Origins-Pattern (%s)%s" % (
            ", ".join(origins) or "empty", where("Origins-Pattern")))
    timers = {}
    for line in sec.get("timers", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            timers[parts[0]] = (parts[1], parts[2])
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        enabled, active = timers.get(unit, ("absent", "absent"))
        if enabled not in ("enabled", "static") or active != "active":
            problems.append("%s %s/%s (systemctl is-enabled/is-active)" % (unit, enabled, active))
    if problems:
        return {"observed": False, "evidence": "security updates do not run: " + "; ".join(problems)}
    return {"observed": True, "evidence": "unattended-upgrades installed; apt-config dump: APT::Periodic::Unattended-Upgrade \"%s\", "
            "Update-Package-Lists \"%s\", security origin %s; apt-daily.timer and apt-daily-upgrade.timer enabled and active" % (
                dump.get("apt::periodic::unattended-upgrade"), dump.get("apt::periodic::update-package-lists"),
                next(o for o in origins if re.search(r"security", o, re.IGNORECASE)))}


# ---- security event logging --------------------------------------------------------------
_FACILITY = {"LOG_AUTH": "auth", "LOG_AUTHPRIV": "authpriv", "LOG_USER": "user", "LOG_DAEMON": "daemon",
             **{"LOG_LOCAL%d" % i: "local%d" % i for i in range(8)}}


def _selected(selector):
    """rsyslog selector ``auth,authpriv.*;local6.*`` -> {"auth", "authpriv", "local6"} ("*" for all)."""
    out = set()
    for part in selector.split(";"):
        fac, _, prio = part.partition(".")
        if prio.strip() in ("none", "!*"):
            continue
        out |= {f.strip() for f in fac.split(",") if f.strip()}
    return out


def ctfleet_log_forwarding(text, collector=""):
    """Whether security events reach the regional collector, from::

        ### rules      audit rules loaded (auditctl -l) or, where auditd cannot run, written
        ### auditd     systemctl is-active auditd
        ### rsyslog    systemctl is-active rsyslog
        ### plugin     /etc/audit/plugins.d/syslog.conf (grep -Hn active/args)
        ### forward    rsyslog lines that forward (grep -Hn omfwd / @@host)
        ### journald   ForwardToSyslog= lines of systemd-analyze cat-config systemd/journald.conf
        ### probe      local=yes|no: a probe logged with logger reached rsyslog's auth.log;
                       collector=yes|no|unchecked: it reached the collector

    Returns {"observed": bool (None where only auditd's absence in a container is wrong),
    "evidence": each broken link of the chain and where it is broken}.
    """
    sec = _sections(text)
    problems = []
    host = str(collector or "").split(":")[0]
    plugin = sec.get("plugin", "")
    active = re.search(r"^([^:]+:\d+):\s*active\s*=\s*(\S+)", plugin, re.MULTILINE)
    args = re.search(r"^([^:]+:\d+):\s*args\s*=\s*(.*)$", plugin, re.MULTILINE)
    facility = "user"
    if args:
        for word in args.group(2).split():
            facility = _FACILITY.get(word.upper(), facility)
    if not active or active.group(2).lower() != "yes":
        problems.append("audit events not sent to syslog (%s)" % (
            "%s active = %s" % (active.group(1), active.group(2)) if active else "audisp syslog plugin absent"))
    forwards = []
    for line in sec.get("forward", "").splitlines():
        m = re.match(r"^([^:]+:\d+):\s*(\S+)\s+(.*)$", line)
        if not m or m.group(2).startswith("#"):
            continue
        target = re.search(r'target="([^"]+)"', m.group(3)) or re.match(r"@@?\(?[^)]*\)?([^:;\s]+)", m.group(3))
        forwards.append((m.group(1), _selected(m.group(2)), target.group(1) if target else "?"))
    to_collector = [f for f in forwards if not host or f[2] == host]
    if not to_collector:
        problems.append("no rsyslog rule forwards to the collector %s (%s)" % (
            collector or "(baseline_log_collector unset)", "forwarding rules: " + ", ".join(
                "%s -> %s" % (f[0], f[2]) for f in forwards) if forwards else "no forwarding rule in /etc/rsyslog.conf, /etc/rsyslog.d"))
    else:
        sel = set().union(*(f[1] for f in to_collector))
        missing = [f for f in ("auth", "authpriv", facility) if f not in sel and "*" not in sel]
        if missing:
            problems.append("the forwarding rule %s does not select %s%s" % (
                to_collector[0][0], ", ".join(dict.fromkeys(missing)),
                " (the facility of audit events, %s args = %s)" % (args.group(1), args.group(2).strip())
                if facility in missing and args else (" (audit events use facility %s)" % facility if facility in missing else "")))
    if sec.get("rsyslog", "").strip() != "active":
        problems.append("rsyslog %s (systemctl is-active)" % (sec.get("rsyslog", "").strip() or "absent"))
    journald = [l for l in sec.get("journald", "").splitlines() if re.match(r"^\s*ForwardToSyslog\s*=", l)]
    if journald and journald[-1].split("=", 1)[1].strip().lower() in ("no", "false", "0", "off"):
        where = sec.get("journald_files", "").strip()
        problems.append("journald does not pass events to rsyslog: %s%s" % (journald[-1].strip(), " (%s)" % where if where else ""))
    probe = dict(re.findall(r"(\w+)=(\S+)", sec.get("probe", "")))
    if probe.get("local") == "no":
        problems.append("a probe event (logger -p authpriv.notice) did not reach rsyslog within %ss (/var/log/auth.log)" % probe.get("wait", "?"))
    if probe.get("collector") == "no":
        problems.append("a probe event did not arrive at the collector %s" % collector)
    rules = sec.get("rules", "").strip()
    if rules in ("", "no", "none"):
        problems.append("no audit rules (%s)" % (rules or "auditctl -l and /etc/audit/rules.d/ctfleet.rules both empty"))
    auditd = sec.get("auditd", "").strip() or "absent"
    in_container = "container" in sec.get("virt", "")
    chain = "probe event %s%s" % ("reached rsyslog" if probe.get("local") == "yes" else "not checked locally",
                                   {"yes": " and the collector", "no": "", "unchecked": " (arrival at the collector not checked: no probe command)"}.get(
                                       probe.get("collector", "unchecked"), ""))
    if problems:
        return {"observed": False, "evidence": "security events are not all forwarded: " + "; ".join(problems)}
    if auditd != "active":
        if in_container:
            return {"observed": None, "evidence": "forwarding to %s works (%s; audit events as %s), but auditd is %s: a container cannot run it"
                    % (collector, chain, facility, auditd)}
        return {"observed": False, "evidence": "auditd %s (systemctl is-active): no security events are recorded" % auditd}
    return {"observed": True, "evidence": "auditd active with rules, audit events as %s, forwarded to %s by %s; %s" % (
        facility, collector, to_collector[0][0], chain)}


# ---- file permissions --------------------------------------------------------------------
def ctfleet_file_modes(text, specs=(), stderr="", default=None):
    """Judge ``stat -c '%n %a %U %G'`` lines against ``specs`` ([{path, mode, owner, group}],
    mode the most a file may allow, group a ``|``-list) or ``default`` for any other path.

    >>> ctfleet_file_modes("/etc/shadow 644 root shadow", [{"path": "/etc/shadow", "mode": "0640", "owner": "root", "group": "root|shadow"}])["evidence"]
    '/etc/shadow mode 0644 root:shadow (want at most 0640, owner root, group root|shadow)'
    """
    by_path = {s["path"]: s for s in specs or []}
    bad, seen = [], []
    for line in str(text or "").splitlines():
        parts = line.split()
        if len(parts) != 4 or not re.match(r"^[0-7]{3,4}$", parts[1]):
            continue
        path, mode, owner, group = parts[0], int(parts[1], 8), parts[2], parts[3]
        spec = by_path.get(path) or default
        if not spec:
            continue
        seen.append(path)
        want = int(str(spec["mode"]), 8)
        groups = str(spec.get("group", "root")).split("|")
        if mode & ~want or owner != spec.get("owner", "root") or group not in groups:
            bad.append("%s mode %04o %s:%s (want at most %s, owner %s, group %s)" % (
                path, mode, owner, group, spec["mode"], spec.get("owner", "root"), spec.get("group", "root")))
    if not seen:
        return {"observed": None, "evidence": "stat gave nothing to judge: %s" % (str(stderr or "").strip()[:200] or "no output")}
    if bad:
        return {"observed": False, "evidence": "; ".join(bad)}
    return {"observed": True, "evidence": "stat: %s within the allowed modes and owners" % ", ".join(seen)}


class FilterModule:
    def filters(self):
        return {"ctfleet_judge": ctfleet_judge, "ctfleet_textfile": ctfleet_textfile, "ctfleet_capture": ctfleet_capture,
                "ctfleet_sshd_contexts": ctfleet_sshd_contexts, "ctfleet_sshd_args": ctfleet_sshd_args, "ctfleet_sshd_effective": ctfleet_sshd_effective,
                "ctfleet_nft_inbound": ctfleet_nft_inbound, "ctfleet_apt_updates": ctfleet_apt_updates,
                "ctfleet_sudo_grants": ctfleet_sudo_grants, "ctfleet_log_forwarding": ctfleet_log_forwarding,
                "ctfleet_file_modes": ctfleet_file_modes}
