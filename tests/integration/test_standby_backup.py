"""backup-push on a streaming standby (PostgreSQL 15 and 18): the primary archives the WAL, the
standby is backed up (fully, and incrementally), and the backup restores to a point in time as a
primary of its own."""
import json
import os
import re

from harness import run
from test_backups import start_recovered
from test_incremental import incremental_cluster
from test_wal_archiving import archiving_cluster


def make_standby(make_cluster, primary):
    s = make_cluster(primary.version, "standby")
    # -R: standby.signal and primary_conninfo in postgresql.auto.conf, as a real standby has.
    run([primary.bin("pg_basebackup"), "-D", s.data, "-R", "-X", "stream", "-c", "fast"],
        user="postgres", env=primary.env())
    s.configure()  # its own port; archive_mode = on (from the primary) archives nothing on a standby
    s.start()
    s.wait_until("SELECT pg_is_in_recovery()", "t")
    return s


def caught_up(primary, standby):
    lsn = primary.psql("SELECT pg_current_wal_lsn()")
    standby.wait_until(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn", "t")


def test_backup_of_a_standby_restores_as_a_primary(make_cluster, wale, archive, scratch, pg_version):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, pg_version)
    c.pgbench("-i", "-s", "4", "-q")
    s = make_standby(make_cluster, c)
    c.pgbench("-c", "2", "-T", "2", "-n")
    caught_up(c, s)
    assert os.path.exists(os.path.join(s.data, "standby.signal"))

    p = wale("backup-push", "--fast", s.data, prefix=prefix, env=s.env())
    assert p.returncode == 0, p.stderr.decode()
    name = p.stdout.decode().strip()
    err = p.stderr.decode()
    assert "this standby does not archive WAL (archive_mode = on)" in err, err

    # Work after the backup, a target, work past it; the primary archives all of it.
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('standby_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1 AS x")
    c.wait_archived()

    listing = wale("backup-list", prefix=prefix).stdout.decode()
    assert f"\r\n{name}\t" in listing

    target = os.path.join(scratch, "restored")
    r = make_cluster(pg_version, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "standby_target", "--recovery-target-action", "promote",
             target, name, prefix=prefix)
    assert f.returncode == 0, f.stderr.decode()
    assert "every file matched the backup manifest" in f.stderr.decode()
    # Left out of the backup: restored with it, the cluster would come up as a standby of the old
    # primary (primary_conninfo is in postgresql.auto.conf) and never reach its target.
    assert not os.path.exists(os.path.join(target, "standby.signal"))
    assert os.path.exists(os.path.join(target, "recovery.signal"))
    with open(os.path.join(target, "postgresql.auto.conf")) as conf:
        assert "primary_conninfo" in conf.read()

    # The backup's name is the start of WAL the standby's backup_label gives.
    label = open(os.path.join(target, "backup_label")).read()
    m = re.search(r"START WAL LOCATION: ([0-9A-F]+)/([0-9A-F]+) \(file ([0-9A-F]{24})\)", label)
    assert m, label
    lsn = (int(m.group(1), 16) << 32) | int(m.group(2), 16)
    assert name == f"base_{m.group(3)}_{lsn % (16 << 20):08d}", (name, label)
    assert "BACKUP FROM: standby" in label

    start_recovered(c, r, target, expected)
    log = open(r.log, errors="replace").read()
    assert 'recovery stopping at restore point "standby_target"' in log


def test_incremental_backups_of_a_standby(make_cluster, wale, archive, scratch, pg_version):
    """backup-push --incremental on a standby, as backups are often taken: block level from the
    standby's own WAL summaries on 18 (file level on 15); the chain of a full backup and two
    incrementals of the standby restores to a point in time as a primary of its own."""
    prefix, adir = archive
    c = incremental_cluster(make_cluster, wale, prefix, pg_version)
    c.pgbench("-i", "-s", "4", "-q")
    s = make_standby(make_cluster, c)
    caught_up(c, s)
    names = []
    for kind in ("full", "incremental", "incremental"):
        if names:
            c.pgbench("-c", "2", "-T", "2", "-n")
            c.psql(f"CREATE TABLE link_{len(names)} AS SELECT g FROM generate_series(1, 10000) g")
            caught_up(c, s)
            if len(names) == 1:
                # No checkpoint replayed since the full backup: the standby's backup would start
                # where the full one did. Said so, with what to do.
                p = wale("backup-push", "--fast", "--require-incremental", s.data, prefix=prefix, env=s.env())
                assert p.returncode == 1 and "run CHECKPOINT on the primary" in p.stderr.decode(), p.stderr.decode()
            c.psql("CHECKPOINT")
            caught_up(c, s)
        p = wale("backup-push", "--fast", *(["--require-incremental"] if kind != "full" else []), s.data,
                 prefix=prefix, env=s.env())
        err = p.stderr.decode()
        assert p.returncode == 0, err
        names.append(p.stdout.decode().strip())
        if kind != "full":
            found = "WAL summaries" if pg_version >= 17 else "size and modification time"
            assert f"changes found by {found}" in err, err
            assert names[-1].startswith("incr_"), names
    listed = json.loads(wale("backup-list", "--json", prefix=prefix).stdout.decode())
    chain = {b["name"]: b for b in listed}
    assert chain[names[2]]["parent"] == names[1] and chain[names[1]]["parent"] == names[0]

    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('standby_chain_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1 AS x")
    c.wait_archived()
    target = os.path.join(scratch, "restored-chain")
    r = make_cluster(pg_version, "restored-chain")
    f = wale("backup-fetch", "--recovery-target-name", "standby_chain_target", "--recovery-target-action", "promote",
             target, names[2], prefix=prefix)
    assert f.returncode == 0, f.stderr.decode()
    assert not os.path.exists(os.path.join(target, "standby.signal"))
    start_recovered(c, r, target, expected)
    assert r.psql("SELECT count(*) FROM link_2") == "10000"
