"""backup-push / backup-fetch / backup-list on real PostgreSQL 15 and 18: a point-in-time restore
with load during the backup, verified data and amcheck."""
import os
import shutil
import subprocess
import time
import datetime
import json

from harness import chown_pg, run
from test_wal_archiving import archiving_cluster


def pg_env(c, prefix):
    e = c.env()
    e["WALE_FILE_PREFIX"] = prefix
    return e


def backup_push(wale, c, prefix, *extra, check=True, env=None):
    p = wale("backup-push", *extra, c.data, prefix=prefix, env={**c.env(), **(env or {})})
    if check:
        assert p.returncode == 0, p.stderr.decode()
    return p


def restore_config(c, target, port):
    """The backup excludes postgresql.conf and pg_hba.conf (as WAL-E's does): bring them along."""
    for f in ("postgresql.conf", "pg_hba.conf"):
        shutil.copy(os.path.join(c.data, f), os.path.join(target, f))
        chown_pg(os.path.join(target, f))
    with open(os.path.join(target, "postgresql.auto.conf"), "a") as f:
        f.write(f"\nport = {port}\narchive_mode = off\n")


def amcheck(r):
    r.psql("CREATE EXTENSION IF NOT EXISTS amcheck")
    n = r.psql("SELECT count(*) FROM (SELECT bt_index_check(c.oid, true) FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
               "WHERE a.amname = 'btree' AND c.relpersistence <> 't' AND c.relkind = 'i') s")
    assert int(n) > 5
    for t in ("pgbench_accounts", "pgbench_branches"):
        r.psql(f"SELECT verify_heapam('{t}')")
        assert r.psql(f"SELECT count(*) FROM verify_heapam('{t}')") == "0"


def start_recovered(c, r, target, expected):
    """Starts the restored cluster `r`, waits for its recovery to end, and checks it holds the data
    at the target (`expected`; no `after_target` table) and passes amcheck."""
    restore_config(c, target, r.port)
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
    assert r.psql("SELECT to_regclass('after_target') IS NULL") == "t"
    amcheck(r)


def test_point_in_time_restore_with_load_during_backup(make_cluster, wale, archive, scratch, pg_version):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, pg_version)
    c.pgbench("-i", "-s", "8", "-q")
    load = subprocess.Popen(
        [c.bin("pgbench"), "-c", "2", "-T", "12", "-n", "postgres"], env={**os.environ, **c.env()},
        preexec_fn=lambda: (os.setgid(104), os.setuid(101)) and None, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1)
    p = backup_push(wale, c, prefix, "--fast")
    name = p.stdout.decode().strip()
    assert name.startswith("base_") and len(name) == 5 + 24 + 1 + 8
    assert load.poll() is None, "the load should still be running when the backup finished"
    assert load.wait() == 0, load.stderr.read().decode()

    c.pgbench("-c", "2", "-T", "3", "-n")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('wal_e_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1 AS x")
    c.pgbench("-c", "2", "-T", "2", "-n")
    c.wait_archived()

    listing = wale("backup-list", prefix=prefix).stdout.decode()
    assert listing.startswith("name\tlast_modified\texpanded_size_bytes\twal_segment_backup_start\t")
    assert f"\r\n{name}\t" in listing and listing.endswith("\t\t\r\n")

    target = os.path.join(scratch, "restored")
    r = make_cluster(pg_version, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "wal_e_target", "--recovery-target-action", "promote",
             target, "LATEST", prefix=prefix)
    assert f.returncode == 0, f.stderr.decode()
    assert "every file matched the backup manifest" in f.stderr.decode()
    assert os.path.exists(os.path.join(target, "backup_label"))
    assert os.path.exists(os.path.join(target, "recovery.signal"))
    start_recovered(c, r, target, expected)
    log = open(r.log, errors="replace").read()
    assert "recovery stopping at restore point \"wal_e_target\"" in log


def test_backup_objects_and_sentinel(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "1", "-q")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    bdir = os.path.join(adir, "basebackups_005")
    assert sorted(os.listdir(bdir)) == [name, name + "_backup_stop_sentinel.json"]
    assert open(os.path.join(bdir, name, "extended_version.txt")).read().startswith("PostgreSQL 15")
    parts = sorted(os.listdir(os.path.join(bdir, name, "tar_partitions")))
    assert parts[0] == "part_00000000.tar.lzo"
    # WAL-E's tar tooling can read our partitions: lzop, then tar.
    listing = subprocess.run(f"lzop -dc {os.path.join(bdir, name, 'tar_partitions', parts[0])} | tar -tvf -",
                             shell=True, capture_output=True, check=True).stdout.decode()
    assert " global/pg_control" in listing
    assert "postmaster.pid" not in listing and "postgresql.conf" not in listing
    label = subprocess.run(f"lzop -dc {os.path.join(bdir, name, 'tar_partitions', parts[-1])} | tar -xOf - backup_label",
                           shell=True, capture_output=True, check=True).stdout.decode()
    assert "START WAL LOCATION" in label and "BACKUP METHOD: streamed" in label
    sentinel = open(os.path.join(bdir, name + "_backup_stop_sentinel.json")).read()
    assert sentinel.startswith('{"wal_segment_backup_stop": "0000000100000000000000')
    assert '"spec": {"base_prefix": "' + os.path.realpath(c.data) + '/", "tablespaces": []}' in sentinel
    assert not sentinel.endswith("\n")
    detail = wale("backup-list", "--detail", prefix=prefix).stdout.decode().split("\r\n")[1].split("\t")
    assert detail[0] == name and int(detail[2]) > 10_000_000 and detail[5].startswith("00000001")
    js = wale("backup-list", "--json", "LATEST", prefix=prefix).stdout.decode()
    assert f'"name": "{name}"' in js and '"file_count": ' in js


def test_fetch_refuses_a_live_directory_and_bad_names(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    backup_push(wale, c, prefix, "--fast")
    p = wale("backup-fetch", c.data, "LATEST", prefix=prefix)
    assert p.returncode == 1 and "attempting to overwrite a live data directory" in p.stderr.decode()
    p = wale("backup-fetch", os.path.join(scratch, "x"), "base_nonsense", prefix=prefix)
    assert p.returncode == 1 and "invalid backup query submitted" in p.stderr.decode()
    p = wale("backup-fetch", os.path.join(scratch, "x"), "base_000000010000000000000099_00000040", prefix=prefix)
    assert p.returncode == 1 and "no backups found for fetching" in p.stderr.decode()
    p = wale("backup-list", "bogus", prefix=prefix)
    assert p.returncode == 1 and p.stdout.decode().startswith("name\t")  # header first, as WAL-E does


def test_offline_backup_is_named_from_pg_control(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "1", "-q")
    p = wale("backup-push", "--while-offline", c.data, prefix=prefix, env=c.env())
    assert p.returncode == 1 and "running cluster" in p.stderr.decode()
    c.stop()
    out = run([c.bin("pg_controldata"), c.data], env={"LC_ALL": "C"}).stdout.decode()
    redo_file = [l.split(":")[1].strip() for l in out.splitlines() if l.startswith("Latest checkpoint's REDO WAL file")][0]
    redo = [l.split(":")[1].strip() for l in out.splitlines() if l.startswith("Latest checkpoint's REDO location")][0]
    offset = int(redo.split("/")[1], 16) % (16 << 20)
    p = wale("backup-push", "--while-offline", c.data, prefix=prefix, env={"PATH": c.bindir + ":" + os.environ["PATH"]})
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().strip() == f"base_{redo_file}_{offset:08d}"


def test_cluster_read_rate_limit_limits_the_total_rate(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "3", "-q")
    size = int(run(["du", "-sb", "--exclude=pg_wal", c.data]).stdout.split()[0])
    limit = 12_000_000
    t0 = time.time()
    backup_push(wale, c, prefix, "--fast", "--pool-size", "4", "--cluster-read-rate-limit", str(limit))
    elapsed = time.time() - t0
    # At most one second of burst ahead of the schedule.
    assert elapsed >= size / limit - 1.2, (size, elapsed)


def test_restores_a_wal_e_0_7_style_archive(wale, archive, scratch):
    """GNU tar partitions, unpadded part_N names, the root member `/`, a name over 100 bytes."""
    import io
    import tarfile
    prefix, adir = archive
    name = "base_000000010000000000000004_00000040"
    pdir = os.path.join(adir, "basebackups_005", name, "tar_partitions")
    os.makedirs(pdir)
    long = "base/16384/" + "x" * 120
    files = {"PG_VERSION": b"9.4\n", "global/pg_control": os.urandom(8192), long: b"long name", "backup_label": b"START WAL LOCATION: 0/4000040\n"}
    groups = [["PG_VERSION", "global/pg_control"], [long, "backup_label"]]
    for n, group in enumerate(groups):
        out = io.BytesIO()
        t = tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT)
        if n == 0:
            root = tarfile.TarInfo("/")
            root.type = tarfile.DIRTYPE
            root.mode = 0o700
            t.addfile(root)
        for f in group:
            ti = tarfile.TarInfo(f)
            ti.size = len(files[f])
            ti.mode = 0o600
            t.addfile(ti, io.BytesIO(files[f]))
        t.close()
        open(os.path.join(pdir, f"part_{n}.tar.lzo"), "wb").write(run(["lzop", "--stdout"], input=out.getvalue()).stdout)
    with open(os.path.join(adir, "basebackups_005", name + "_backup_stop_sentinel.json"), "w") as f:
        f.write('{"spec": {"tablespaces": [], "base_prefix": "/old/data/"}, "wal_segment_backup_stop": "000000010000000000000004", '
                '"expanded_size_bytes": 8212, "wal_segment_offset_backup_stop": "00000300"}')
    target = os.path.join(scratch, "restored07")
    p = wale("backup-fetch", target, "LATEST", prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    for f, data in files.items():
        assert open(os.path.join(target, f), "rb").read() == data
        assert os.stat(os.path.join(target, f)).st_mode & 0o777 == 0o600
    assert os.stat(target).st_mode & 0o777 == 0o700
    listing = wale("backup-list", "--detail", prefix=prefix).stdout.decode()
    assert f"{name}\t" in listing and "\t8212\t000000010000000000000004\t00000040\t000000010000000000000004\t00000300\r\n" in listing


def test_delta_restore_rebuilds_a_diverged_directory_in_place(make_cluster, wale, archive, scratch):
    """backup-fetch --delta into the stopped source directory after it moved on: files that match
    the manifest stay, changed ones (one with the same size) are rewritten, what the backup lacks
    (new relations, junk, the diverged WAL) is removed, configuration and logs are kept, and the
    cluster recovers to the restore point taken right after the backup."""
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "2", "-q")
    c.psql("CREATE TABLE steady AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
    backup_push(wale, c, prefix, "--fast")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('delta_target')")
    c.wait_archived()
    # The directory moves on: more transactions, a new table, a table dropped.
    c.pgbench("-c", "2", "-T", "2", "-n")
    c.psql("CREATE TABLE after_target AS SELECT g FROM generate_series(1, 50000) g")
    c.psql("DROP TABLE steady")
    c.psql("CHECKPOINT")
    p = wale("backup-fetch", "--delta", c.data, "LATEST", prefix=prefix)
    assert p.returncode == 1 and "attempting to overwrite a live data directory" in p.stderr.decode()
    c.stop()
    conf_before = {f: open(os.path.join(c.data, f)).read() for f in ("postgresql.conf", "pg_hba.conf")}
    db = [d for d in os.listdir(os.path.join(c.data, "base")) if d not in ("1", "4")][0]
    junk = [os.path.join(c.data, "base", db, "999999"), os.path.join(c.data, "stray.txt"),
            os.path.join(c.data, "base", "777777", "1234")]
    os.makedirs(os.path.dirname(junk[2]))
    for j in junk:
        with open(j, "wb") as f:
            f.write(b"x" * 8192)
    os.makedirs(os.path.join(c.data, "log"), exist_ok=True)
    with open(os.path.join(c.data, "log", "server.log"), "w") as f:
        f.write("kept\n")
    with open(os.path.join(c.data, "PG_VERSION"), "w") as f:
        f.write("99\n")  # same size, other content: only the checksum tells
    run(["chown", "-R", "postgres:postgres", c.data])
    diverged = c.wal_segments()
    assert diverged

    f = wale("backup-fetch", "--delta", "--recovery-target-name", "delta_target", "--recovery-target-action", "promote",
             c.data, "LATEST", prefix=prefix)
    err = f.stderr.decode()
    assert f.returncode == 0, err
    assert "every file matched the backup manifest" in err
    line = next(l for l in err.splitlines() if "delta restore:" in l)
    kept, total = (int(x) for x in line.split("delta restore: ")[1].split(" files")[0].split(" of "))
    rewritten = int(line.split("in place, ")[1].split(" rewritten")[0])
    removed = int(line.split("rewritten, ")[1].split(" removed")[0])
    assert kept > total // 2, line  # most of the cluster did not change
    assert rewritten >= 3 and kept + rewritten == total, line  # pg_control, PG_VERSION, pgbench_accounts at least
    assert removed >= len(junk) + 2, line  # the junk, base/777777, after_target's files and the diverged WAL
    assert removed >= len(junk) + 1 + len(diverged), (line, diverged)  # every segment counted (removed during the download)
    for j in junk:
        assert not os.path.exists(j), j
    assert not os.path.exists(os.path.join(c.data, "base", "777777"))
    assert open(os.path.join(c.data, "PG_VERSION")).read() == "15\n"
    assert open(os.path.join(c.data, "log", "server.log")).read() == "kept\n"
    assert {f: open(os.path.join(c.data, f)).read() for f in conf_before} == conf_before
    assert c.wal_segments() == []
    assert os.path.exists(os.path.join(c.data, "global", "pg_control"))
    c.start()
    c.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert c.table_checksums() == expected
    assert c.psql("SELECT to_regclass('after_target') IS NULL") == "t"
    amcheck(c)
    # Into an empty directory --delta is a plain restore: nothing to keep, nothing to remove.
    c.stop()
    again = wale("backup-fetch", "--delta", os.path.join(scratch, "fresh-delta"), "LATEST", prefix=prefix)
    assert again.returncode == 0, again.stderr.decode()
    assert "delta restore: 0 of " in again.stderr.decode() and " rewritten, 0 removed" in again.stderr.decode()


def modified_before(f, start):
    """The manifest entry `f` says its file was last modified before a backup started at `start`:
    by more than 50 ms (the kernel's coarse clock), or a whole second when only seconds are recorded."""
    if "mtime_ns" in f:
        return f["mtime"] + f["mtime_ns"] / 1e9 < start - 0.05
    return f["mtime"] < int(start) - 1


def test_delta_restore_leaves_partitions_unread_and_trusts_mtime_only_when_asked(make_cluster, wale, archive, scratch):
    """A delta restore compares each partition's files with the directory before downloading it:
    into a directory already holding the backup, only the partition with pg_control is read.
    --delta-trust-mtime keeps a file with the backup's size, mode and mtime without reading it (a
    change that kept both goes unseen, as with pgBackRest's --delta --force), except a file the
    backup saw modified within a second of its start, which it still reads; plain --delta reads
    every file and repairs both. The directory then recovers to the backup's data."""
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "2", "-q")
    c.psql("CREATE TABLE steady AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g")
    c.psql("CHECKPOINT")
    time.sleep(1.2)  # steady's file is then well before the start; what the backup's checkpoint writes is after it
    name = backup_push(wale, c, prefix, "--fast", "--partition-size", str(4 << 20)).stdout.decode().strip()
    expected = c.table_checksums()
    steady = c.psql("SELECT pg_relation_filepath('steady')")
    c.wait_archived()
    c.stop()

    sentinel = json.load(open(os.path.join(adir, "basebackups_005", name + "_backup_stop_sentinel.json")))
    start = sentinel["start_time"]
    start = datetime.datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
    mdir = os.path.join(adir, "basebackups_005", name, "wal_e_manifest")
    entries = [f for m in os.listdir(mdir) for f in json.load(open(os.path.join(mdir, m)))["files"]]
    parts = len(os.listdir(mdir))
    assert parts >= 8, parts
    # The guard: modified less than 50 ms before the start (the kernel's coarse clock) or after it.
    recent = [f["path"] for f in entries if not modified_before(f, start) and f["size"] > 0
              and f["path"] != "global/pg_control" and "/" in f["path"]]
    assert recent, "the backup's checkpoint wrote no file?"
    old = next(f for f in entries if f["path"] == steady)
    assert modified_before(old, start), (old, start)

    target = os.path.join(scratch, "delta-target")
    f = wale("backup-fetch", target, name, prefix=prefix)
    assert f.returncode == 0, f.stderr.decode()

    def delta(*flags):
        p = wale("backup-fetch", *flags, target, name, prefix=prefix)
        err = p.stderr.decode()
        assert p.returncode == 0, err
        line = next(l for l in err.splitlines() if "delta restore:" in l)
        return err.count("left a partition unread"), int(line.split("in place, ")[1].split(" rewritten")[0])

    unread, rewritten = delta("--delta")
    assert unread == parts - 1 and rewritten == 1, (unread, rewritten)  # only pg_control's partition, only pg_control

    def tamper(path):
        p = os.path.join(target, path)
        st = os.stat(p)
        with open(p, "r+b") as fh:
            original = fh.read(8)
            fh.seek(0)
            fh.write(bytes(b ^ 0xFF for b in original))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        return p, original

    def head(p):
        with open(p, "rb") as fh:
            return fh.read(8)

    quiet, quiet_bytes = tamper(steady)
    busy, busy_bytes = tamper(recent[0])
    unread, rewritten = delta("--delta-trust-mtime")
    assert head(busy) == busy_bytes, recent[0]  # within the guard: read, found changed, rewritten
    assert head(quiet) != quiet_bytes  # size, mode and mtime as in the backup: trusted, as documented
    assert rewritten == 2 and parts - 2 <= unread <= parts - 1, (unread, rewritten)  # pg_control's partition, and busy's
    unread, rewritten = delta("--delta")
    assert head(quiet) == quiet_bytes and rewritten == 2, rewritten  # read: found changed, rewritten

    r = make_cluster(15, "delta-target")
    with open(os.path.join(target, "recovery.signal"), "w"):
        pass
    restore_config(c, target, r.port)
    with open(os.path.join(target, "postgresql.auto.conf"), "a") as fh:
        fh.write("restore_command = '" + wale.command_line(prefix, "wal-fetch %f %p") + "'\nrecovery_target_action = promote\n")
    run(["chown", "-R", "postgres:postgres", target])
    r.data = target
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
