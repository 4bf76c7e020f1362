#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs the Swift unit tests, then the
# integration tests against real PostgreSQL 15 and 18 clusters (as the postgres user).
# Usage: scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
ensure_deps
ensure_wale_peer
ensure_seaweedfs

echo ">> swift build" >&2
swift build 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
[ -x .build/debug/wal-e ] || { echo "build failed" >&2; exit 1; }
swift build 2>&1 | tail -1

# S3 on 127.0.0.1 for the conformance suite and the s3:// integration tests.
start_seaweedfs "${WALE_TEST_S3_PORT:-9320}"
s3_create_bucket conformance
# Azure Blob (wabs://) emulator for the conformance suite and the wabs:// integration tests.
start_azblob "${WALE_TEST_WABS_PORT:-9340}"
# OpenStack Swift (swift://): a one-node SAIO from Debian's packages, and a small Keystone.
start_swift "${WALE_TEST_SWIFT_PORT:-9360}"
# Google Cloud Storage (gs://): fake-gcs-server behind a small OAuth2 server that checks tokens.
start_gcs "${WALE_TEST_GCS_PORT:-9380}"
gcs_create_bucket conformance

echo ">> unit tests and the ObjectStore conformance suite (swift test)" >&2
unit_log=$(mktemp)
if ! swift test >"$unit_log" 2>&1; then
  grep -E '✘|error:' "$unit_log" | head -60
  tail -5 "$unit_log"
  echo "unit tests failed" >&2
  exit 1
fi
grep -E '^(✔|✘) Suite|Test run with|Executed [0-9]+ test' "$unit_log" || tail -3 "$unit_log"
rm -f "$unit_log"

echo ">> integration tests (pytest, PostgreSQL 15 and 18)" >&2
export WALE_BIN=$PWD/.build/debug/wal-e
# In parallel workers (pytest-xdist), one per core: the tests mostly wait on PostgreSQL, servers
# and timeouts; the ones that time a fault share one worker (xdist_group "fault-timing").
# WALE_TEST_WORKERS=1 runs them one by one.
workers=${WALE_TEST_WORKERS:-2}
"$WALE_TEST_ROOT/venv/bin/python" -m pytest -q -p no:cacheprovider --durations=12 \
  $([ "$workers" -gt 1 ] && echo "-n $workers --dist loadgroup") tests/integration "$@"

# PostgreSQL's own recovery test suite with wal-e as archive_command and restore_command
# (tests/pg-tap/README.md): WALE_PG_TAP=1 adds it (not yet by default: CI's time budget).
if [ "${WALE_PG_TAP:-0}" = 1 ] && [ $# -eq 0 ]; then
  echo ">> PostgreSQL's recovery tests (src/test/recovery) with wal-e, PostgreSQL 15 and 18" >&2
  bash tests/pg-tap/run.sh
fi
