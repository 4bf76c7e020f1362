"""wal-push as archive_command and wal-fetch as restore_command of real PostgreSQL 15 and 18 clusters."""
import os
import shutil
import subprocess

from harness import chown_pg, run, sha256_file


def archiving_cluster(make_cluster, wale, prefix, version, extra=""):
    c = make_cluster(version)
    c.initdb(
        archive_mode="on",
        archive_command="'" + wale.command_line(prefix, "wal-push %p" + extra) + "'",
        wal_keep_size="'4GB'", max_wal_size="'4GB'", checkpoint_timeout="'30min'")
    c.start()
    return c


def fetch_and_compare(wale, prefix, c, scratch, segments):
    out = os.path.join(scratch, "fetched")
    os.makedirs(out, exist_ok=True)
    chown_pg(out)
    for seg in segments:
        dest = os.path.join(out, seg)
        p = wale("wal-fetch", "-p", "0", seg, dest, prefix=prefix)
        assert p.returncode == 0, p.stderr.decode()
        assert sha256_file(dest) == sha256_file(os.path.join(c.data, "pg_wal", seg)), f"{seg} differs"
        os.unlink(dest)


def test_archive_command_under_pgbench_every_segment_identical(make_cluster, wale, archive, scratch, pg_version):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, pg_version)
    c.pgbench("-i", "-s", "4", "-q")
    c.pgbench("-c", "2", "-j", "2", "-T", "8", "-n")
    last = c.wait_archived()

    segments = [s for s in c.wal_segments() if s <= last]
    assert len(segments) >= 4
    stored = sorted(os.listdir(os.path.join(adir, "wal_005")))
    for s in segments:
        assert s + ".lzo" in stored, f"{s} was not archived"
    # Every stored object is a real lzop file the lzop tool accepts.
    run(["lzop", "-t", os.path.join(adir, "wal_005", segments[0] + ".lzo")])
    fetch_and_compare(wale, prefix, c, scratch, segments)
    log = open(c.log, errors="replace").read()
    assert "archive command failed" not in log


def test_recovery_through_wal_fetch_replays_to_the_end(make_cluster, wale, archive, scratch, pg_version):
    prefix, _ = archive
    c = archiving_cluster(make_cluster, wale, prefix, pg_version)
    c.pgbench("-i", "-s", "2", "-q")
    base = os.path.join(scratch, "restored")
    run([c.bin("pg_basebackup"), "-D", base, "-X", "none", "-c", "fast"], user="postgres", env=c.env())
    c.pgbench("-c", "2", "-T", "5", "-n")
    c.psql("CREATE TABLE after_base AS SELECT g, md5(g::text) FROM generate_series(1, 50000) g")
    expected = c.table_checksums()
    c.wait_archived()
    c.stop()

    r = make_cluster(pg_version, "restored")
    with open(os.path.join(base, "postgresql.auto.conf"), "a") as f:
        f.write(f"port = {r.port}\n")
        f.write("archive_mode = off\n")
        f.write("restore_command = '" + wale.command_line(prefix, 'wal-fetch "%f" "%p"') + "'\n")
    open(os.path.join(base, "recovery.signal"), "w").close()
    chown_pg(os.path.join(base, "recovery.signal"))
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
    log = open(r.log, errors="replace").read()
    assert "restored log file" in log
    assert "archive recovery complete" in log


def test_pool_pushes_ready_neighbours_ahead_of_postgresql(make_cluster, wale, archive, scratch):
    """A pool uploads the oldest .ready neighbours too, but leaves archive_status to PostgreSQL: its
    own later call for each succeeds at once from a marker (no store request) and is counted in
    pg_stat_archiver, so archived_count and last_archived_wal stay true."""
    prefix, adir = archive
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'/bin/false'", wal_keep_size="'1GB'")
    c.start()
    c.pgbench("-i", "-s", "3", "-q")
    for _ in range(3):
        c.psql("SELECT pg_switch_wal()")
        c.psql("CREATE TABLE IF NOT EXISTS t AS SELECT 1")
    status = os.path.join(c.data, "pg_wal", "archive_status")
    markers = os.path.join(c.data, "pg_wal", ".wal-e", "pushed")
    ready = sorted(n[:-6] for n in os.listdir(status) if n.endswith(".ready"))
    assert len(ready) >= 4
    first = ready[0]
    before = sorted(os.listdir(status))
    p = wale("wal-push", "--pool-size", "3", os.path.join(c.data, "pg_wal", first), prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    stored = os.listdir(os.path.join(adir, "wal_005"))
    # %p itself, plus the two oldest other .ready segments; archive_status untouched.
    for s in ready[:3]:
        assert s + ".lzo" in stored
    assert sorted(os.listdir(status)) == before
    assert sorted(os.listdir(markers)) == ready[1:3]
    for s in ready[3:]:
        assert s + ".lzo" not in stored

    # PostgreSQL's own call for a neighbour: answered from the marker, nothing sent to the store.
    obj = os.path.join(adir, "wal_005", ready[1] + ".lzo")
    mtime = os.stat(obj).st_mtime_ns
    os.chmod(os.path.join(adir, "wal_005"), 0o555)  # a store request that writes would now fail
    try:
        p = wale("wal-push", "--pool-size", "1", os.path.join(c.data, "pg_wal", ready[1]), prefix=prefix)
    finally:
        os.chmod(os.path.join(adir, "wal_005"), 0o755)
    assert p.returncode == 0 and b"archived ahead by an earlier wal-push" in p.stderr, p.stderr.decode()
    assert os.stat(obj).st_mtime_ns == mtime and ready[1] not in os.listdir(markers)
    # A marker for another prefix is not trusted: the full push decides (and finds it absent there).
    other = prefix + "-other"
    p = wale("wal-push", "--pool-size", "1", os.path.join(c.data, "pg_wal", ready[2]), prefix=other)
    assert p.returncode == 0 and b"archived ahead" not in p.stderr, p.stderr.decode()
    assert os.path.exists(os.path.join(adir + "-other", "wal_005", ready[2] + ".lzo"))

    # With wal-e as archive_command (default pool): every segment counted by PostgreSQL.
    c.psql("ALTER SYSTEM SET archive_command = '" + wale.command_line(prefix, "wal-push %p").replace("'", "''") + "'")
    c.psql("SELECT pg_reload_conf()")
    c.wait_archived()
    newest = sorted(n[:24] for n in os.listdir(status) if n.endswith(".done"))[-1]
    c.wait_until("SELECT last_archived_wal FROM pg_stat_archiver", newest)
    done = [n for n in os.listdir(status) if n.endswith(".done")]
    assert int(c.psql("SELECT archived_count FROM pg_stat_archiver")) == len(done)
    assert not [n for n in os.listdir(status) if n.endswith(".ready")]
    c.psql("SELECT pg_switch_wal()")
    c.wait_archived()
    assert not os.listdir(markers)  # every marker used or swept


def test_failing_pool_push_changes_nothing(make_cluster, wale, archive, scratch):
    """A wal-push that fails leaves archive_status as it was (PostgreSQL skips a segment once it is
    .done, so a neighbour marked by a failing call would never show in pg_stat_archiver); one
    that fails on %p itself (missing, not a WAL name, bad header) uploads nothing either."""
    prefix, adir = archive
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'/bin/false'", wal_keep_size="'1GB'")
    c.start()
    c.pgbench("-i", "-s", "2", "-q")
    for _ in range(3):
        c.psql("SELECT pg_switch_wal()")
        c.psql("CREATE TABLE IF NOT EXISTS t AS SELECT 1")
    c.stop()  # its archiver renames nothing behind the test's back
    pg_wal = os.path.join(c.data, "pg_wal")
    status = os.path.join(pg_wal, "archive_status")
    before = sorted(os.listdir(status))
    assert sum(n.endswith(".ready") for n in before) >= 4, before

    def stored():
        d = os.path.join(adir, "wal_005")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    garbage = os.path.join(pg_wal, "0000000100000000000000F0")
    with open(garbage, "wb") as f:
        f.write(os.urandom(16 << 20))
    not_wal = os.path.join(pg_wal, "not-a-wal-file")
    with open(not_wal, "wb") as f:
        f.write(b"x" * 8192)
    chown_pg(garbage)
    chown_pg(not_wal)
    for path, text in ((os.path.join(pg_wal, "0000000100000000000000EE"), "could not find file"),
                       (not_wal, "is not a WAL file name"),
                       (garbage, "is not a valid WAL segment")):
        p = wale("wal-push", "--pool-size", "8", path, prefix=prefix)
        assert p.returncode != 0 and text in p.stderr.decode(), (path, p.returncode, p.stderr.decode())
        assert "Traceback" not in p.stderr.decode()
        assert sorted(os.listdir(status)) == before, path
        assert stored() == [], (path, stored())
    os.unlink(garbage)
    os.unlink(not_wal)

    # %p refused by the store (the archive holds other bytes under its name): neighbours may be
    # uploaded (PostgreSQL will find them identical later) but none is recorded.
    first = sorted(n[:-6] for n in before if n.endswith(".ready"))[0]
    other = os.path.join(scratch, "other")
    os.makedirs(other)
    shutil.copy(os.path.join(pg_wal, first), os.path.join(other, first))
    with open(os.path.join(other, first), "r+b") as f:
        f.seek(1 << 20)
        f.write(b"a different cluster's bytes")
    chown_pg(other)
    chown_pg(os.path.join(other, first))
    assert wale("wal-push", os.path.join(other, first), prefix=prefix).returncode == 0
    archived = sha256_file(os.path.join(adir, "wal_005", first + ".lzo"))
    p = wale("wal-push", "--pool-size", "8", os.path.join(pg_wal, first), prefix=prefix)
    assert p.returncode != 0 and "refusing to overwrite" in p.stderr.decode(), p.stderr.decode()
    assert sorted(os.listdir(status)) == before
    assert not os.listdir(os.path.join(pg_wal, ".wal-e", "pushed")) if os.path.isdir(os.path.join(pg_wal, ".wal-e", "pushed")) else True
    assert sha256_file(os.path.join(adir, "wal_005", first + ".lzo")) == archived

    # A pool whose %p succeeds records the neighbours it archived (archive_status stays
    # PostgreSQL's, every .ready kept); the refused one gets no marker.
    ready = sorted(n[:-6] for n in before if n.endswith(".ready"))
    p = wale("wal-push", "--pool-size", "3", os.path.join(pg_wal, ready[1]), prefix=prefix)
    assert p.returncode == 0 and "could not archive a .ready segment" in p.stderr.decode(), p.stderr.decode()
    assert sorted(os.listdir(status)) == before
    assert sorted(os.listdir(os.path.join(pg_wal, ".wal-e", "pushed"))) == [ready[2]]


def test_history_partial_and_backup_files_are_archived(wale, archive, scratch):
    prefix, adir = archive
    src = os.path.join(scratch, "pg_wal")
    os.makedirs(src)
    files = {
        "00000002.history": b"1\t0/3000000\tno recovery target specified\n",
        "000000010000000000000002.00000028.backup": b"START WAL LOCATION: 0/2000028\n",
    }
    for name, data in files.items():
        with open(os.path.join(src, name), "wb") as f:
            f.write(data)
    for name, data in files.items():
        p = wale("wal-push", os.path.join(src, name), prefix=prefix, user=None)
        assert p.returncode == 0, p.stderr.decode()
        out = run(["lzop", "-dc", os.path.join(adir, "wal_005", name + ".lzo")]).stdout
        assert out == data
        dest = os.path.join(scratch, "got-" + name)
        assert wale("wal-fetch", name, dest, prefix=prefix, user=None).returncode == 0
        assert open(dest, "rb").read() == data
