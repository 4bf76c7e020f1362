#!/usr/bin/env bash
# Quick start, command 1: installs what is missing, builds wal-e (release), and runs the main job
# end to end on a throwaway PostgreSQL cluster archived to a local file:// store.
# WALE_DEMO_PG=18 uses PostgreSQL 18 instead of 15.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
ensure_deps
echo ">> swift build -c release --static-swift-stdlib" >&2
swift build -c release --static-swift-stdlib 2>&1 | tail -1
export WALE_BIN=$PWD/.build/release/wal-e
exec "$WALE_TEST_ROOT/venv/bin/python" scripts/demo.py
