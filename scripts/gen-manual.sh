#!/usr/bin/env bash
# Regenerates docs/man/wal-e.1 from the command tree (swift-argument-parser's manual generator, run
# on the built wal-e). The date is fixed so the page only changes when the commands do;
# tests/integration/test_cli_docs.py fails when the page is stale.
# Usage: scripts/gen-manual.sh [path to a built wal-e]   (MANUAL_OUT=FILE writes elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
MANUAL_DATE=2026-12-06
/opt/swift/usr/bin/swift build --product generate-manual 2>&1 | tail -1 >&2
wale=${1:-}
if [ -z "$wale" ]; then
  /opt/swift/usr/bin/swift build --product wal-e 2>&1 | tail -1 >&2
  wale=.build/debug/wal-e
fi
.build/debug/generate-manual "$wale" --date "$MANUAL_DATE" --authors "wal-e developers" -o - > "${MANUAL_OUT:-docs/man/wal-e.1}"
echo "wrote ${MANUAL_OUT:-docs/man/wal-e.1}" >&2

# Help snapshots: every command's --help at a fixed width, so a changed help text shows in review
# and a stale snapshot fails tests/integration/test_cli_docs.py (HELP_OUT=DIR writes elsewhere).
help_dir=${HELP_OUT:-docs/help}
mkdir -p "$help_dir"
rm -f "$help_dir"/*.txt
export COLUMNS=100
"$wale" --help > "$help_dir/wal-e.txt"
for c in $("$wale" --help | awk '/^SUBCOMMANDS:/ {f = 1; next} f && /^  [a-z]/ {print $1}'); do
  "$wale" "$c" --help > "$help_dir/$c.txt"
done
for m in before retain old-versions everything; do "$wale" delete "$m" --help > "$help_dir/delete-$m.txt"; done
for k in generate usage rewrap; do "$wale" key "$k" --help > "$help_dir/key-$k.txt"; done
echo "wrote $help_dir/*.txt" >&2
