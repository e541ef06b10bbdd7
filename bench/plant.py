#!/usr/bin/env python3
"""Planted secrets for bench/scanner.sh, and the scoring of each tool's output.

    plant.py DIR                     writes the planted files into DIR
    plant.py --score TOOL DIR OUT    prints "recall false_positives" for TOOL's output OUT

Twelve well-known secret types, ten files each (one secret per file, freshly random), and
placeholder files that look like secrets but are not. A file counts as found when the tool
reports anything in it: recall is found secret files / secret files, false positives are
flagged placeholder files.
"""

import json
import os
import random
import string
import sys

ALNUM = string.ascii_letters + string.digits
rng = random.Random(20261126)


def rand(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def pem():
    body = "\n".join(rand(ALNUM + "+/", 64) for _ in range(12))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n"


def jwt():
    import base64

    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    head = part({"alg": "HS256", "typ": "JWT"})
    body = part({"sub": rand(string.digits, 8), "name": "svc", "iat": 1764000000})
    return f"{head}.{body}.{rand(ALNUM + '-_', 43)}"


SECRETS = {
    "aws": lambda: (
        f"aws_access_key_id = AKIA{rand('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)}\n"
        f"aws_secret_access_key = {rand(ALNUM + '/+', 40)}\n",
        "ini",
    ),
    "github-pat": lambda: (f"GITHUB_TOKEN=ghp_{rand(ALNUM, 36)}\n", "env"),
    "github-fine": lambda: (
        f"token = \"github_pat_{rand(ALNUM, 22)}_{rand(ALNUM, 59)}\"\n",
        "toml",
    ),
    "slack": lambda: (
        f"SLACK_BOT_TOKEN=xoxb-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{rand(ALNUM, 24)}\n",
        "env",
    ),
    "stripe": lambda: (f"stripe.api_key = \"sk_live_{rand(ALNUM, 24)}\"\n", "py"),
    "private-key": lambda: (pem(), "pem"),
    "jwt": lambda: (f"const token = \"{jwt()}\";\n", "js"),
    "password": lambda: (
        f"db_password = \"{rand(ALNUM, 6)}#{rand(ALNUM, 5)}!{rand(ALNUM, 4)}\"\n",
        "py",
    ),
    "postgres-url": lambda: (
        f"DATABASE_URL=postgres://app:{rand(ALNUM, 16)}@db.internal:5432/app\n",
        "env",
    ),
    "openai": lambda: (f"OPENAI_API_KEY=sk-proj-{rand(ALNUM + '-_', 48)}T3BlbkFJ{rand(ALNUM + '-_', 48)}\n", "env"),
    "google-api": lambda: (f"key: AIza{rand(ALNUM + '-_', 35)}\n", "yaml"),
    "npm": lambda: (f"//registry.npmjs.org/:_authToken=npm_{rand(ALNUM, 36)}\n", "npmrc"),
}

PLACEHOLDERS = [
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n", "ini"),
    ("GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", "env"),
    ('password = "changeme"\n', "py"),
    ('stripe.api_key = "sk_live_YOUR_KEY_HERE"\n', "py"),
    ("DB_PASSWORD=${DB_PASSWORD}\n", "env"),
    ('api_key = "<your-api-key>"\n', "toml"),
    ("DATABASE_URL=postgres://user:password@localhost/db\n", "env"),
    ("SLACK_BOT_TOKEN=xoxb-your-token-here\n", "env"),
    ('token = "{{ vault_token }}"\n', "yaml"),
    ("# Set OPENAI_API_KEY=sk-... in your environment\n", "md"),
]


def plant(target):
    os.makedirs(target, exist_ok=True)
    for kind, make in SECRETS.items():
        for i in range(10):
            text, ext = make()
            with open(os.path.join(target, f"secret-{kind}-{i}.{ext}"), "w") as f:
                f.write(f"# config {i}\n{text}")
    for i, (text, ext) in enumerate(PLACEHOLDERS * 6):
        with open(os.path.join(target, f"placeholder-{i}.{ext}"), "w") as f:
            f.write(f"# example configuration\n{text}")


def flagged(tool, out):
    """File names (basenames) the tool reported."""
    text = open(out, errors="replace").read()
    names = set()
    if tool == "chaperone":
        for f in json.loads(text or "{}").get("findings", []):
            names.add(os.path.basename(f["path"]))
    elif tool == "detect-secrets":
        for path in json.loads(text or "{}").get("results", {}):
            names.add(os.path.basename(path))
    elif tool == "secretlint":
        try:
            results = json.loads(text) if text.strip() else []
        except json.JSONDecodeError:
            results = []
        for r in results:
            if r.get("messages"):
                names.add(os.path.basename(r["filePath"]))
    else:  # ripsecrets and rg print paths first on each line
        for line in text.splitlines():
            names.add(os.path.basename(line.split(":", 1)[0]))
    return names


def score(tool, target, out):
    names = flagged(tool, out)
    files = os.listdir(target)
    secrets = [f for f in files if f.startswith("secret-")]
    placeholders = [f for f in files if f.startswith("placeholder-")]
    found = sum(1 for f in secrets if f in names)
    false = sum(1 for f in placeholders if f in names)
    print(f"{found / len(secrets):.0%} {false}/{len(placeholders)}")


if __name__ == "__main__":
    if sys.argv[1] == "--score":
        score(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        plant(sys.argv[1])
