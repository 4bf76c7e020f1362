#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs the Swift unit tests, then the
# integration tests against real PostgreSQL 15 and 18 clusters (as the postgres user), with
# PostgreSQL's own recovery suite (tests/pg-tap) beside them.
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

export WALE_BIN=$PWD/.build/debug/wal-e
# PostgreSQL's own recovery tests (tests/pg-tap) run beside the integration tests, at the lowest
# CPU priority: both mostly wait on their servers, so side by side they cost CI minutes less than
# one after the other, and niced they take only the cores the integration tests leave idle (whose
# fault-timing tests must not be slowed; docs/design.md, "Test run time"). WALE_PG_TAP=0 leaves
# them out; a pytest selection (arguments) runs without them.
tap_pid=
if [ "${WALE_PG_TAP:-1}" = 1 ] && [ $# -eq 0 ]; then
  echo ">> PostgreSQL's recovery tests (src/test/recovery) with wal-e, PostgreSQL 15 and 18, in the background" >&2
  tap_log=$(mktemp)
  PG_TAP_JOBS=${PG_TAP_JOBS:-2} nice -n 19 bash tests/pg-tap/run.sh >"$tap_log" 2>&1 &
  tap_pid=$!
fi

echo ">> integration tests (pytest, PostgreSQL 15 and 18)" >&2
workers=${WALE_TEST_WORKERS:-2}
status=0
"$WALE_TEST_ROOT/venv/bin/python" -m pytest -q -p no:cacheprovider --durations=12 \
  $([ "$workers" -gt 1 ] && echo "-n $workers --dist loadgroup") tests/integration "$@" || status=$?

if [ -n "$tap_pid" ]; then
  tap_status=0
  wait "$tap_pid" || tap_status=$?
  echo ">> PostgreSQL's recovery tests with wal-e:" >&2
  cat "$tap_log"
  if [ "$tap_status" -ne 0 ]; then
    echo "PostgreSQL's recovery tests failed with wal-e (tests/pg-tap/run.sh; the table above)" >&2
    status=1
  fi
  rm -f "$tap_log"
fi
exit $status
