#!/usr/bin/env python3
"""Checks rules/secrets.toml without building the crate.

What it checks, for every rule:

- the TOML loads (tomllib) and has only the fields the scanner accepts;
- ids are unique and kebab-case, severities valid, keywords non-empty and lowercase;
- the regex uses only syntax that both Rust's regex-syntax and Python's `re` read the same way:
  no look-around, backreferences, atomic groups, possessive quantifiers, class set operations,
  nested classes, POSIX classes, Unicode classes or stray braces; `(?i)` only at the start or
  scoped as `(?i:...)`; one line, ASCII only, and no match longer than 1024 characters;
- `secret_group` is a group of the regex;
- every example produces a finding the way the scanner decides one (ASCII classes, the line
  searched from left to right, the secret group present and non-empty, a keyword in the whole
  match, the entropy reached, the secret not a placeholder), and carries none of the words the
  scanner filters out or that mark a made-up value;
- no counter-example produces a match that has the secret group, a keyword and the entropy
  (the placeholder filter is not applied: a counter-example must fail on the regex or entropy);
- random strings generated from the regex never produce a match without a keyword;
- with `rg` (ripgrep, built on Rust's regex crate) on PATH: every regex compiles there too
  (`--no-unicode`), and finds the same matches as Python on the examples and counter-examples.

It also replays the scanner's own tests that use the whole rule set (`src/scan.rs`): one
finding for `GITHUB_TOKEN=ghp_...` in a `.env`, none for the placeholder lines, and the GitHub
finding in `const token = "ghp_..."` at column 16.

Usage: python3 check_rules.py [path/to/secrets.toml]. Exits 1 on any failure.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

try:  # Python 3.11+
    from re import _constants as C
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover
    import sre_constants as C  # type: ignore
    import sre_parse  # type: ignore

RULES = Path(__file__).with_name("secrets.toml")
MIN_RULES = 150
MAX_MATCH = 1024
FUZZ_SAMPLES = 150

FIELDS = {
    "id", "description", "severity", "keywords", "regex", "secret_group", "entropy",
    "examples", "counter_examples",
}
REQUIRED = {"id", "description", "severity", "keywords", "regex"}
SEVERITIES = {"low", "medium", "high", "critical"}

# The scanner's placeholder filter (src/rules.rs, PLACEHOLDERS), applied to the secret.
PLACEHOLDERS = [
    "example", "xxxx", "changeme", "change_me", "dummy", "sample", "placeholder", "your_",
    "your-", "yourkey", "redacted", "${", "{{", "<", ">", "0000000000", "1234567890",
    "abcdefgh", "*****",
]
# Words an example line must not hold at all: the filter's, and those that mark a made-up value.
EXAMPLE_BANNED = PLACEHOLDERS + ["test", "fake", "your", "chaperone:allow"]
ALLOW = "chaperone:allow"
FLAGS = re.ASCII  # the scanner compiles with Unicode off: \w, \d, \s, \b and (?i) are ASCII

# Escapes both Rust (including the older regex-syntax in ripgrep) and Python accept.
ESCAPE_LETTERS = set("dDwWsSbBtnrfvA")
ESCAPE_PUNCT = set("\\.+*?()|[]{}^$#&-~")
REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte, as `rules::entropy`."""
    if not data:
        return 0.0
    counts: dict[int, int] = {}
    for b in data:
        counts[b] = counts.get(b, 0) + 1
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def is_placeholder(secret: str) -> bool:
    lower = secret.lower()
    return any(word in lower for word in PLACEHOLDERS)


def lint_regex(rx: str) -> list[str]:
    """Syntax that Rust's regex crate rejects or reads differently from Python's re."""
    problems = []
    if not rx.isascii():
        problems.append("non-ASCII character")
    if "\n" in rx or "\r" in rx:
        problems.append("regex spans lines")
    i, n = 0, len(rx)
    in_class = False
    class_first = False
    last_quantifier = False
    while i < n:
        c = rx[i]
        if c == "\\":
            if i + 1 >= n:
                problems.append("trailing backslash")
                break
            d = rx[i + 1]
            if d.isdigit():
                problems.append(f"backreference or octal escape \\{d}")
            elif d == "x":
                if not re.fullmatch(r"[0-9A-Fa-f]{2}", rx[i + 2:i + 4]):
                    problems.append("\\x needs two hex digits")
                i += 2
            elif d.isalpha() and d not in ESCAPE_LETTERS:
                problems.append(f"escape \\{d} (unsupported, Unicode-only or a backreference)")
            elif not d.isalnum() and d not in ESCAPE_PUNCT:
                problems.append(f"escape \\{d} of a non-meta character (older Rust rejects it)")
            i += 2
            last_quantifier = False
            class_first = False
            continue
        if in_class:
            if c == "[":
                problems.append("nested class or POSIX class inside [...]")
            elif c == "]" and not class_first:
                in_class = False
            elif rx[i:i + 2] in ("--", "&&", "~~"):
                problems.append(f"class set operation {rx[i:i + 2]!r} (Rust) inside [...]")
            class_first = False
            i += 1
            continue
        if c == "[":
            in_class = True
            i += 1
            if i < n and rx[i] == "^":
                i += 1
            class_first = True
            last_quantifier = False
            continue
        if c == "(":
            last_quantifier = False
            if rx.startswith("(?", i):
                rest = rx[i + 2:]
                if rest.startswith(("=", "!", "<=", "<!")):
                    problems.append("look-around")
                elif rest.startswith(">"):
                    problems.append("atomic group")
                elif rest.startswith("P="):
                    problems.append("named backreference")
                elif rest.startswith("<"):
                    problems.append("(?<name>...) (use (?P<name>...))")
                elif rest.startswith(("#", "(")):
                    problems.append("comment or conditional group")
                elif rest.startswith(("P<", ":")):
                    pass
                else:
                    flags = re.match(r"([A-Za-z-]*)([:)])", rest)
                    if not flags or flags.group(1) != "i":
                        problems.append(f"inline flags {rest[:6]!r}: only (?i) and (?i:...)")
                    elif flags.group(2) == ")" and i != 0:
                        problems.append("(?i) not at the start (use (?i:...))")
            i += 1
            continue
        if c == "{":
            m = REPEAT.match(rx, i)
            if not m:
                problems.append("'{' that is not a repetition (escape it)")
                i += 1
                continue
            lo, hi = int(m.group(1)), m.group(3)
            if hi not in (None, "") and int(hi) < lo:
                problems.append(f"repetition {m.group(0)} with max < min")
            i = m.end()
            if i < n and rx[i] == "+":
                problems.append("possessive quantifier")
            last_quantifier = True
            continue
        if c in "*+?":
            if last_quantifier and c == "+":
                problems.append("possessive quantifier")
            last_quantifier = c != "?" or not last_quantifier
            i += 1
            continue
        last_quantifier = False
        i += 1
    if in_class:
        problems.append("unterminated class")
    return problems


def matches(rx: re.Pattern, text: str):
    """Every match as the scanner walks a line: search, then go on from the match's end."""
    at = 0
    while at <= len(text):
        m = rx.search(text, at)
        if not m:
            break
        yield m
        at = m.end() if m.end() > m.start() else m.end() + 1


def qualifies(m: re.Match, rule: dict, placeholders: bool) -> bool:
    group = rule.get("secret_group", 0)
    secret = m.group(group)
    if not secret:
        return False
    whole = m.group(0).lower()
    if not any(k in whole for k in rule["keywords"]):
        return False
    if placeholders and is_placeholder(secret):
        return False
    minimum = rule.get("entropy")
    return minimum is None or entropy(secret.encode()) >= minimum


# ---------------------------------------------------------------- random strings from a regex

PRINTABLE = [chr(c) for c in range(32, 127)] + ["\t"]
CATEGORIES = {
    C.CATEGORY_DIGIT: lambda ch: ch.isdigit(),
    C.CATEGORY_NOT_DIGIT: lambda ch: not ch.isdigit(),
    C.CATEGORY_SPACE: lambda ch: ch in " \t\n\r\f\v",
    C.CATEGORY_NOT_SPACE: lambda ch: ch not in " \t\n\r\f\v",
    C.CATEGORY_WORD: lambda ch: ch.isalnum() or ch == "_",
    C.CATEGORY_NOT_WORD: lambda ch: not (ch.isalnum() or ch == "_"),
}


def in_class(ch: str, items, icase: bool) -> bool:
    negate, hit = False, False
    variants = {ch, ch.lower(), ch.upper()} if icase else {ch}
    for op, av in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            hit |= chr(av) in variants
        elif op is C.RANGE:
            hit |= any(av[0] <= ord(v) <= av[1] for v in variants)
        elif op is C.CATEGORY:
            hit |= CATEGORIES[av](ch)
        else:
            raise ValueError(f"class item {op}")
    return hit != negate


def generate(tree, rnd: random.Random, icase: bool) -> str:
    out = []
    for op, av in tree:
        if op is C.LITERAL:
            ch = chr(av)
            out.append(ch.swapcase() if icase and rnd.random() < 0.5 else ch)
        elif op is C.NOT_LITERAL:
            out.append(rnd.choice([c for c in PRINTABLE if c.lower() != chr(av).lower()]))
        elif op is C.ANY:
            out.append(rnd.choice(PRINTABLE))
        elif op is C.IN:
            choices = [c for c in PRINTABLE if in_class(c, av, icase)]
            if choices:
                ch = rnd.choice(choices)
                out.append(ch.swapcase() if icase and rnd.random() < 0.5 else ch)
        elif op is C.BRANCH:
            out.append(generate(rnd.choice(av[1]), rnd, icase))
        elif op is C.SUBPATTERN:
            _group, add, remove, sub = av
            inner = (icase or bool(add & C.SRE_FLAG_IGNORECASE)) and not (
                remove & C.SRE_FLAG_IGNORECASE
            )
            out.append(generate(sub, rnd, inner))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            hi = min(hi, lo + 8)
            count = rnd.choice([lo, hi, rnd.randint(lo, hi)])
            out.extend(generate(sub, rnd, icase) for _ in range(count))
        elif op is C.AT:
            pass
        else:
            raise ValueError(f"unsupported regex node {op}")
    return "".join(out)


# ---------------------------------------------------------------- ripgrep (Rust regex) checks


def rg_check(rules: list[dict], failures: list[str]) -> bool:
    rg = shutil.which("rg")
    if not rg:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        for rule in rules:
            rx = rule.get("regex")
            if not isinstance(rx, str):
                continue
            lines = [s for s in rule.get("examples", []) + rule.get("counter_examples", [])
                     if isinstance(s, str) and "\n" not in s]
            path = Path(tmp) / "lines.txt"
            path.write_text("".join(s + "\n" for s in lines))
            proc = subprocess.run(
                [rg, "--no-unicode", "--no-config", "--json", "-e", rx, str(path)],
                capture_output=True, text=True,
            )
            if proc.returncode == 2:
                failures.append(f"{rule.get('id')}: ripgrep rejects the regex: "
                                f"{proc.stderr.strip().splitlines()[-1:]}")
                continue
            found: dict[int, list[tuple[int, int]]] = {}
            for row in proc.stdout.splitlines():
                event = json.loads(row)
                if event["type"] == "match":
                    data = event["data"]
                    found[data["line_number"] - 1] = [
                        (s["start"], s["end"]) for s in data["submatches"]
                    ]
            py = re.compile(rx, FLAGS)
            for index, line in enumerate(lines):
                ours = [(m.start(), m.end()) for m in matches(py, line)]
                if ours != found.get(index, []):
                    failures.append(f"{rule.get('id')}: Python and ripgrep disagree on {line!r}: "
                                    f"{ours} vs {found.get(index, [])}")
    return True


# ---------------------------------------------------------------- the scanner's own tests


def scan_text(compiled: list[tuple[dict, re.Pattern]], text: str):
    """Findings as `Scanner::scan_bytes`: (line, column, rule id, secret), sorted, deduplicated."""
    findings = set()
    for number, line in enumerate(text.split("\n"), start=1):
        if ALLOW in line:
            continue
        lower = line.lower()
        for rule, rx in compiled:
            if not any(k in lower for k in rule["keywords"]):
                continue
            for m in matches(rx, line):
                if qualifies(m, rule, placeholders=True):
                    group = rule.get("secret_group", 0)
                    findings.add((number, m.start(group) + 1, rule["id"], m.group(group)))
    return sorted(findings)


def replay_scanner_tests(compiled, failures: list[str]) -> None:
    secret = "ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo"
    found = scan_text(compiled, f"GITHUB_TOKEN={secret}\n")
    if len(found) != 1:
        failures.append(f"scanner test: GITHUB_TOKEN=ghp_... must give one finding, got {found}")
    text = (
        "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
        'token = "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"\n'
        'password = "${DB_PASSWORD}"\n'
        'key = "<your-key>"\n'
        f"{secret} # chaperone:allow\n"
    )
    found = scan_text(compiled, text)
    if found:
        failures.append(f"scanner test: placeholder lines must give no finding, got {found}")
    found = scan_text(compiled, f'first line\nconst token = "{secret}";\n')
    github = [f for f in found if "github" in f[2]]
    if not github or github[0][:2] != (2, 16) or not github[0][3].startswith("ghp_"):
        failures.append(f"scanner test: GitHub finding at line 2, column 16 expected, got {found}")


# ---------------------------------------------------------------- main


def check(path: Path) -> int:
    failures: list[str] = []
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"FAIL: cannot load {path}: {e}")
        return 1
    unknown = set(data) - {"rule", "disable"}
    if unknown:
        failures.append(f"unknown top-level keys {sorted(unknown)}")
    rules = data.get("rule", [])
    seen: set[str] = set()
    compiled: list[tuple[dict, re.Pattern]] = []
    examples = counters = 0
    for index, rule in enumerate(rules):
        rid = rule.get("id", f"#{index}")

        def fail(message: str) -> None:
            failures.append(f"{rid}: {message}")

        if set(rule) - FIELDS:
            fail(f"unknown fields {sorted(set(rule) - FIELDS)}")
        if REQUIRED - set(rule):
            fail(f"missing fields {sorted(REQUIRED - set(rule))}")
            continue
        if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", rid):
            fail("id is not kebab-case")
        if rid in seen:
            fail("duplicate id")
        seen.add(rid)
        if not isinstance(rule["description"], str) or not rule["description"].strip():
            fail("empty description")
        if rule["severity"] not in SEVERITIES:
            fail(f"severity {rule['severity']!r} not one of {sorted(SEVERITIES)}")
        keywords = rule["keywords"]
        if (not isinstance(keywords, list) or not keywords
                or any(not isinstance(k, str) or not k for k in keywords)):
            fail("keywords must be a non-empty list of non-empty strings")
            continue
        for k in keywords:
            if k != k.lower() or not k.isascii():
                fail(f"keyword {k!r} is not lowercase ASCII")
        entropy_min = rule.get("entropy")
        if entropy_min is not None and (
            not isinstance(entropy_min, (int, float)) or not 0 < entropy_min <= 8
        ):
            fail(f"entropy {entropy_min!r} out of range")
        group = rule.get("secret_group", 0)
        if not isinstance(group, int) or group < 0:
            fail("secret_group must be a non-negative integer")
            continue
        rx_text = rule["regex"]
        for problem in lint_regex(rx_text):
            fail(f"regex: {problem}")
        try:
            rx = re.compile(rx_text, FLAGS)
        except re.error as e:
            fail(f"regex does not compile in Python: {e}")
            continue
        if group > rx.groups:
            fail(f"secret_group {group} but the regex has {rx.groups} groups")
            continue
        tree = sre_parse.parse(rx_text, FLAGS)
        width = tree.getwidth()[1]
        if width > MAX_MATCH:
            fail(f"a match can be {'unbounded' if width >= C.MAXREPEAT else width} characters "
                 f"long (at most {MAX_MATCH})")
        compiled.append((rule, rx))

        ex = rule.get("examples", [])
        ce = rule.get("counter_examples", [])
        if not isinstance(ex, list) or len(ex) < 1:
            fail("needs at least one example")
            ex = []
        if not isinstance(ce, list) or len(ce) < 2:
            fail("needs at least two counter_examples")
            ce = []
        for example in ex:
            examples += 1
            if "\n" in example:
                fail(f"example spans lines: {example!r}")
            banned = [w for w in EXAMPLE_BANNED if w in example.lower()]
            if banned:
                fail(f"example holds placeholder words {banned}: {example!r}")
            found = [m for m in matches(rx, example) if qualifies(m, rule, placeholders=True)]
            if not found:
                all_matches = [m.group(0) for m in matches(rx, example)]
                detail = "no match" if not all_matches else f"matches {all_matches} do not qualify"
                if all_matches:
                    secret = next(matches(rx, example)).group(group) or ""
                    detail += f" (secret {secret!r}, entropy {entropy(secret.encode()):.2f})"
                fail(f"example not found ({detail}): {example!r}")
        for counter in ce:
            counters += 1
            bad = [m.group(0) for m in matches(rx, counter) if qualifies(m, rule, False)]
            if bad:
                fail(f"counter_example matches {bad}: {counter!r}")

        rnd = random.Random(rid)
        icase = bool(tree.state.flags & C.SRE_FLAG_IGNORECASE)
        for _ in range(FUZZ_SAMPLES):
            sample = generate(tree, rnd, icase)
            for text in (sample, f" {sample} "):
                for m in matches(rx, text):
                    if not any(k in m.group(0).lower() for k in keywords):
                        fail(f"a match holds no keyword: {m.group(0)!r}")
                        break
                else:
                    continue
                break
            else:
                continue
            break

    if len(rules) < MIN_RULES:
        failures.append(f"only {len(rules)} rules (at least {MIN_RULES})")
    replay_scanner_tests(compiled, failures)
    used_rg = rg_check(rules, failures)

    for f in failures:
        print(f"FAIL: {f}")
    print(f"{len(rules)} rules, {examples} examples, {counters} counter-examples, "
          f"{len(failures)} failures" + ("" if used_rg else " (ripgrep not found: Rust regex "
                                             "cross-check skipped)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(check(Path(sys.argv[1]) if len(sys.argv) > 1 else RULES))
