#!/usr/bin/env bash
# One command for the side-by-side benchmark (see bench/README.md): installs what is missing
# (pgBackRest from Debian, WAL-E 1.1.1 from PyPI, SeaweedFS), builds wal-e in release mode, starts
# SeaweedFS on 127.0.0.1, runs bench/bench.py and writes bench/results/.
# Environment: BENCH_SCALE (pgbench scale, default 50), BENCH_RANDOM_MB (random table, default
# 13 x scale), BENCH_REPLAY_GIB (WAL for the backlog and replay tests, default 1),
# BENCH_PUSH_RUNS (default 11), BENCH_ONLY (backup,push,backlog; or files alone), BENCH_ROOT (/var/tmp/wale-bench),
# BENCH_MANY_FILES (0: off; N: the N-file case of bench/many_files.py, e.g. 1000000),
# BENCH_RUNS (repetitions of every measured section: medians and spread, default 1),
# BENCH_SCALES (off; e.g. 10,60,300: the cost curve of bench/scales.py, plotted by bench/plot.py),
# BENCH_INCREMENTAL=1 or BENCH_ONLY=incremental (incremental backups on PostgreSQL 18 and 15: bench/incremental.py;
# BENCH_INCREMENTAL_PG=18 for one version).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
ensure_deps
ensure_wale_peer
ensure_seaweedfs
barman=$WALE_TEST_ROOT/barman-venv  # Barman 3.20 needs Python >= 3.12; Debian 12 has 3.11: 3.19.1
if ! "$barman/bin/python" -c 'import barman, lz4, psycopg2, boto3' 2>/dev/null; then
  echo ">> installing barman[cloud] 3.19.1 (PyPI) into $barman" >&2
  /usr/bin/python3 -m venv "$barman" && "$barman/bin/pip" install -q 'barman[cloud]==3.19.1' lz4 psycopg2-binary
fi
chmod -R a+rX "$barman"
if ! command -v pgbackrest >/dev/null; then
  echo ">> installing pgbackrest (Debian)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >/dev/null
fi

echo ">> swift build -c release --static-swift-stdlib" >&2
swift build -c release --static-swift-stdlib 2>&1 | tail -1
ROOT=${BENCH_ROOT:-/var/tmp/wale-bench}
export BENCH_ROOT=$ROOT
for p in main backlog restore; do
  [ -f "$ROOT/$p/postmaster.pid" ] && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$ROOT/$p" -m immediate stop >/dev/null 2>&1 || true
done
rm -rf "$ROOT"; mkdir -p "$ROOT/bin"
install -m 755 .build/release/wal-e "$ROOT/bin/wal-e"

OBJSTORE_DIR=$ROOT/objstore start_seaweedfs "${BENCH_S3_PORT:-9520}"
stop_all() {
  for p in main backlog restore; do
    [ -f "$ROOT/$p/postmaster.pid" ] && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$ROOT/$p" -m immediate stop >/dev/null 2>&1 || true
  done
  kill -9 "$WALE_SEAWEEDFS_PID" 2>/dev/null || true
}
trap stop_all EXIT
/usr/bin/python3 bench/bench.py
if [ -n "${BENCH_SCALES:-}" ]; then
  venv=${WALE_TEST_ROOT:-/opt/wal-e-test}/plot-venv
  if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    echo ">> installing matplotlib (PyPI) into $venv" >&2
    /usr/bin/python3 -m venv "$venv" && "$venv/bin/pip" install -q 'matplotlib>=3.8'
  fi
  "$venv/bin/python" bench/plot.py
fi
# A finished run leaves its clusters and repositories behind: tens of GB after BENCH_RUNS=3 (a full
# disk voided a backlog figure on 2026-12-07). The report is in bench/results; keep the data with
# BENCH_KEEP=1. A failed run (set -e) keeps everything for a look.
if [ "${BENCH_KEEP:-0}" != 1 ]; then
  stop_all
  trap - EXIT
  find "$ROOT" -mindepth 1 -maxdepth 1 ! -name bench.log -exec rm -rf {} +
  echo ">> removed the run's data under $ROOT (BENCH_KEEP=1 keeps it); its log: $ROOT/bench.log" >&2
fi
