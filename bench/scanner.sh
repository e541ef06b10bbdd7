#!/usr/bin/env bash
# The deliverable scanner against its peers, on the same files.
#
#   bash bench/scanner.sh [MiB of crate sources, default 100]
#
# Corpus: crate sources from ~/.cargo/registry/src (real code, copied up to the size asked)
# plus a directory of planted files: secrets of twelve well-known types, one per file, and
# placeholders that must not be flagged. Tools, each run on the same directory:
#   chaperone     target/release/chaperone scan --format json
#   ripsecrets    cargo install ripsecrets (into $TOOLS)
#   detect-secrets  pip install detect-secrets (into $TOOLS/py)
#   secretlint    npm install secretlint @secretlint/secretlint-rule-preset-recommend
#   rg            ripgrep with Chaperone's literal keywords: the speed ceiling
# Reported: MiB/s on the whole corpus, and on the planted files the recall (planted secrets
# found) and false positives (placeholder files flagged). Each tool has $LIMIT seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIB=${1:-100}
TOOLS=${TOOLS:-/tmp/benchtools}
LIMIT=${LIMIT:-900}
WORK=$(mktemp -d /tmp/chaperone-scan-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

install_tools() {
    mkdir -p "$TOOLS"
    [ -x "$TOOLS/bin/ripsecrets" ] || cargo install ripsecrets --locked --root "$TOOLS" >&2
    [ -x "$TOOLS/py/bin/detect-secrets" ] || {
        python3 -m venv "$TOOLS/py"
        "$TOOLS/py/bin/pip" install -q detect-secrets==1.5.0 >&2
    }
    [ -x "$TOOLS/npm/node_modules/.bin/secretlint" ] || {
        mkdir -p "$TOOLS/npm"
        (cd "$TOOLS/npm" && npm init -y >/dev/null &&
            npm install --silent secretlint @secretlint/secretlint-rule-preset-recommend >&2)
    }
    command -v rg >/dev/null || apt-get install -y -q ripgrep >&2
}

build_corpus() {
    local limit=$((MIB * 1024 * 1024)) size=0
    mkdir -p "$WORK/corpus/crates"
    for crate in "$HOME"/.cargo/registry/src/*/*/; do
        [ "$size" -ge "$limit" ] && break
        cp -r "$crate" "$WORK/corpus/crates/"
        size=$(du -sb "$WORK/corpus/crates" | cut -f1)
    done
    python3 "$ROOT/bench/plant.py" "$WORK/corpus/planted"
}

CHAPERONE="$ROOT/target/release/chaperone"
(cd "$ROOT" && cargo build --release --locked -p chaperone >&2)
install_tools
build_corpus
python3 - "$ROOT/crates/chaperone-scan/rules" > "$WORK/keywords.txt" <<'EOF'
import sys, tomllib, pathlib
words = set()
for f in pathlib.Path(sys.argv[1]).glob("*.toml"):
    for rule in tomllib.loads(f.read_text())["rule"]:
        words.update(rule["keywords"])
print("\n".join(sorted(words)))
EOF
cat > "$WORK/.secretlintrc.json" <<'EOF'
{ "rules": [ { "id": "@secretlint/secretlint-rule-preset-recommend" } ] }
EOF

# Each tool: a command over DIR writing its findings to OUT in the tool's own format.
run() {
    local name=$1 dir=$2 out=$3
    case $name in
    chaperone) "$CHAPERONE" scan "$dir" --format json >"$out" || true ;;
    ripsecrets) "$TOOLS/bin/ripsecrets" "$dir" >"$out" || true ;;
    detect-secrets) (cd "$dir" && "$TOOLS/py/bin/detect-secrets" scan --all-files . >"$out") ;;
    secretlint) (cd "$dir" && "$TOOLS/npm/node_modules/.bin/secretlint" "**/*" \
        --secretlintrc "$WORK/.secretlintrc.json" --format json --no-color >"$out" || true) ;;
    rg) rg --hidden --no-ignore -i -l -F -f "$WORK/keywords.txt" "$dir" >"$out" || true ;;
    esac
}

BYTES=$(du -sb "$WORK/corpus" | cut -f1)
printf '%-15s %10s %10s %8s %8s\n' tool seconds MiB/s recall false+
for tool in chaperone ripsecrets detect-secrets secretlint rg; do
    start=$(date +%s.%N)
    # Scanners exit non-zero when they find something; only a timeout (124) is a failure.
    status=0
    timeout "$LIMIT" bash -c "$(declare -f run); CHAPERONE='$CHAPERONE' TOOLS='$TOOLS' WORK='$WORK' run $tool '$WORK/corpus' '$WORK/$tool.out'" || status=$?
    end=$(date +%s.%N)
    if [ "$status" -eq 124 ]; then
        secs="> $LIMIT"
        rate="-"
    else
        secs=$(python3 -c "print(f'{$end - $start:.2f}')")
        rate=$(python3 -c "print(f'{$BYTES / 1048576 / ($end - $start):.1f}')")
    fi
    # Recall and false positives on the planted files alone.
    run $tool "$WORK/corpus/planted" "$WORK/$tool.planted" || true
    read -r recall falsepos < <(python3 "$ROOT/bench/plant.py" --score "$tool" \
        "$WORK/corpus/planted" "$WORK/$tool.planted")
    printf '%-15s %10s %10s %8s %8s\n' "$tool" "$secs" "$rate" "$recall" "$falsepos"
done
echo "corpus: $((BYTES / 1048576)) MiB ($MIB MiB of crate sources + planted files)"
