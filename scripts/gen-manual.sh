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
