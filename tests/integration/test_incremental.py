"""Incremental backups on real clusters: block level from WAL summaries on PostgreSQL 18, file
level on 15; a full backup and three incrementals taken under pgbench load with the changes that
break naive incrementals between them; every link restored through its chain and recovered to
its restore point, with the source's data, amcheck and pg_checksums clean. WAL-E 1.1.1 does not
see the incrementals; retention keeps chains whole; damage in a parent is found."""
import datetime
import json
import os
import subprocess
import time

import pytest

from harness import PG, TEST_ROOT, chown_pg, run, sha256_file
from test_backups import amcheck, backup_push, modified_before, restore_config

WALE_PEER = os.path.join(TEST_ROOT, "wale-venv", "bin", "wal-e")


def incremental_cluster(make_cluster, wale, prefix, version, summaries=True):
    c = make_cluster(version)
    settings = dict(
        archive_mode="on", archive_command="'" + wale.command_line(prefix, "wal-push %p") + "'",
        wal_keep_size="'4GB'", max_wal_size="'4GB'", checkpoint_timeout="'30min'")
    if version >= 17:
        settings["summarize_wal"] = "on" if summaries else "off"
    c.initdb(**settings)
    c.start()
    return c


def full_and_incremental(make_cluster, wale, prefix, version, scale=2):
    """A cluster with a full backup and one incremental over it, after a little pgbench."""
    c = incremental_cluster(make_cluster, wale, prefix, version)
    c.pgbench("-i", "-s", str(scale), "-q")
    full, _ = push(wale, c, prefix)
    c.pgbench("-c", "1", "-T", "1", "-n")
    inc, log = push(wale, c, prefix, "--incremental")
    assert inc.startswith("incr_"), log
    return c, full, inc


def under_load(c, seconds, fn):
    """Runs fn() while pgbench writes (150 transactions a second: a few per cent of the blocks
    change between links, as on a production cluster between nightly backups)."""
    load = subprocess.Popen(
        [c.bin("pgbench"), "-c", "2", "-T", str(seconds), "-R", "150", "-n", "postgres"], env={**os.environ, **c.env()},
        preexec_fn=lambda: (os.setgid(PG.pw_gid), os.setuid(PG.pw_uid)) and None,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    try:
        return fn()
    finally:
        assert load.wait() == 0, load.stderr.read().decode()


def push(wale, c, prefix, *extra):
    p = backup_push(wale, c, prefix, "--fast", *extra)
    return p.stdout.decode().strip(), p.stderr.decode()


def stored_bytes(adir, name):
    total = 0
    for d, _, files in os.walk(os.path.join(adir, "basebackups_005", name)):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    return total


def restore_and_check(make_cluster, wale, prefix, c, scratch, name, point, expected, tag):
    target = os.path.join(scratch, "r_" + tag)
    r = make_cluster(c.version, "r_" + tag)
    f = wale("backup-fetch", "--recovery-target-name", point, "--recovery-target-action", "promote", target, name, prefix=prefix)
    assert f.returncode == 0, f.stderr.decode()
    restore_config(c, target, r.port)
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    got = r.table_checksums()
    # An unlogged table comes back empty, as after any crash or restore (PostgreSQL resets it).
    assert got.pop("scratchpad") == "0:", tag
    assert got == {k: v for k, v in expected.items() if k != "scratchpad"}, tag
    assert r.psql("SELECT count(*) FROM pg_database WHERE datname = 'gone'") == "0"
    amcheck(r)
    r.stop()
    ck = run([c.bin("pg_checksums"), "--check", "-D", target], user="postgres", check=False)
    assert ck.returncode == 0, ck.stdout.decode() + ck.stderr.decode()
    return f.stderr.decode(), r


@pytest.mark.parametrize("version", [18, 15], ids=["pg18-block", "pg15-file"])
def test_full_and_three_incrementals_each_restore_to_their_point(make_cluster, wale, archive, scratch, version):
    prefix, adir = archive
    c = incremental_cluster(make_cluster, wale, prefix, version)
    c.pgbench("-i", "-s", "6", "-q")
    c.psql("CREATE TABLE to_truncate AS SELECT g AS x, repeat('t', 200) AS pad FROM generate_series(1, 20000) g")
    c.psql("CREATE TABLE to_drop AS SELECT g AS x FROM generate_series(1, 5000) g")
    c.psql("CREATE TABLE to_rewrite AS SELECT g AS x, md5(g::text) AS h FROM generate_series(1, 30000) g")
    c.psql("CREATE INDEX ON to_rewrite (h)")
    c.psql("CREATE UNLOGGED TABLE scratchpad AS SELECT g AS x FROM generate_series(1, 1000) g")
    full, _ = under_load(c, 6, lambda: push(wale, c, prefix))
    assert full.startswith("base_")
    full_bytes = stored_bytes(adir, full)

    points = []
    # Link 1: truncate, drop, rewrite (new relfilenode), a database created, an unlogged table written.
    c.pgbench("-c", "2", "-T", "2", "-R", "150", "-n")
    c.psql("TRUNCATE to_truncate")
    c.psql("INSERT INTO to_truncate SELECT g, 'n' FROM generate_series(1, 100) g")
    c.psql("DROP TABLE to_drop")
    c.psql("VACUUM FULL to_rewrite")
    c.psql("CREATE DATABASE gone")
    c.psql("CREATE TABLE in_gone AS SELECT g FROM generate_series(1, 1000) g", db="gone")
    c.psql("INSERT INTO scratchpad SELECT g FROM generate_series(1, 1000) g")
    i1, log1 = under_load(c, 5, lambda: push(wale, c, prefix, "--incremental"))
    # Link 2: CLUSTER (another new relfilenode), the new database dropped again.
    c.psql("CLUSTER to_rewrite USING to_rewrite_h_idx")
    c.psql("DROP DATABASE gone")
    c.pgbench("-c", "2", "-T", "2", "-R", "150", "-n")
    i2, log2 = under_load(c, 5, lambda: push(wale, c, prefix, "--incremental"))
    # Link 3: more of the same load.
    c.pgbench("-c", "2", "-T", "2", "-R", "150", "-n")
    i3, log3 = under_load(c, 5, lambda: push(wale, c, prefix, "--incremental"))
    for n, log in ((i1, log1), (i2, log2), (i3, log3)):
        assert n.startswith("incr_"), log
        assert "incremental over" in log, log
    mode = "block" if version >= 17 else "file"
    # Each link's restore point, after that link, with the data it must give back.
    expected = {}
    for tag in ("p1", "p2", "p3"):
        c.pgbench("-c", "1", "-T", "1", "-n")
        expected[tag] = c.table_checksums()
        c.psql(f"SELECT pg_create_restore_point('{tag}')")
    c.psql("CREATE TABLE after_target AS SELECT 1 AS x")
    c.wait_archived()

    listing = json.loads(wale("backup-list", "--json", prefix=prefix).stdout)
    by = {b["name"]: b for b in listing}
    assert by[full]["type"] == "full" and "parent" not in by[full]
    assert [by[i]["parent"] for i in (i1, i2, i3)] == [full, i1, i2]
    assert [by[i]["chain_depth"] for i in (i1, i2, i3)] == [1, 2, 3]
    assert all(by[i]["incremental_mode"] == mode for i in (i1, i2, i3))
    if version >= 17:
        # Block level: pgbench touched a few per cent of the blocks; far less than a full is stored.
        assert stored_bytes(adir, i3) < full_bytes * 0.5, (stored_bytes(adir, i3), full_bytes)
        assert "patched" in log3 and " 0 patched" not in log3, log3

    # Every link restores through its chain (the full alone for the first point's parent).
    for name, point, tag in ((i1, "p1", "i1"), (i2, "p2", "i2"), (i3, "p3", "i3")):
        log, r = restore_and_check(make_cluster, wale, prefix, c, scratch, name, point, expected[point], tag)
        assert "restoring the chain" in log, log
    v = wale("verify", i3, prefix=prefix)
    assert v.returncode == 0, v.stderr.decode()

    # The restored copy was promoted to a new timeline: an incremental over i3 (timeline 1) would
    # need summaries across the switch; a full backup is taken, saying why.
    r.start()
    name, log = push(wale, r, prefix, "--incremental")
    assert name.startswith("base_") and name[5:13] == "00000002", log
    assert "a promotion in between" in log, log


def test_without_summaries_a_full_backup_is_taken_and_required_fails(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = incremental_cluster(make_cluster, wale, prefix, 18, summaries=False)
    c.pgbench("-i", "-s", "1", "-q")
    first, _ = push(wale, c, prefix)
    second, log = push(wale, c, prefix, "--incremental")
    assert second.startswith("base_"), log
    assert "summarize_wal is off" in log and "taking a full backup" in log, log
    p = backup_push(wale, c, prefix, "--fast", "--require-incremental", check=False)
    assert p.returncode == 1, p.stderr.decode()
    assert "cannot take an incremental backup: summarize_wal is off" in p.stderr.decode()
    names = [b["name"] for b in json.loads(wale("backup-list", "--json", prefix=prefix).stdout)]
    assert sorted(names) == sorted([first, second])


def test_wale_does_not_see_incrementals_and_retention_keeps_chains(make_cluster, wale, archive, scratch):
    if not os.path.exists(os.path.join(TEST_ROOT, "wale-venv", ".wal-e-ready")):
        pytest.fail("WAL-E 1.1.1 is not installed; scripts/test.sh installs it")
    from test_wale_interop import peer_line, recover
    prefix, adir = archive
    c, f1, i1 = full_and_incremental(make_cluster, wale, prefix, 15)
    expected = c.table_checksums()
    c.wait_archived()

    env = {"WALE_LOG_DESTINATION": "stderr", "PATH": "/usr/bin:/bin", "WALE_FILE_PREFIX": prefix}
    theirs = run([WALE_PEER, "backup-list"], user="postgres", env=env).stdout.decode()
    assert f1 in theirs and "incr_" not in theirs, theirs
    target = os.path.join(scratch, "by_wale")
    p = run([WALE_PEER, "backup-fetch", target, "LATEST"], user="postgres", env=env, check=False)
    assert p.returncode == 0, p.stderr.decode()
    assert not any("INCREMENTAL." in n for _, _, files in os.walk(target) for n in files)
    recover(make_cluster, c, target, peer_line(WALE_PEER, prefix, 'wal-fetch "%f" "%p"'), expected)

    # A second chain; retain 1 removes the first full backup with its incremental, and nothing else.
    f2, _ = push(wale, c, prefix)
    c.pgbench("-c", "1", "-T", "1", "-n")
    i2, _ = push(wale, c, prefix, "--incremental")
    assert i2.startswith("incr_")
    dry = wale("delete", "--json", "retain", "1", prefix=prefix)
    assert dry.returncode == 0, dry.stderr.decode()
    plan = json.loads(dry.stdout)
    assert sorted(plan["backups_deleted"]) == sorted([f1, i1]), plan
    assert sorted(plan["backups_kept"]) == sorted([f2, i2]), plan
    # `before` the newest incremental would take its own full backup: the chain keeps it.
    plan = json.loads(wale("delete", "--json", "before", i2, prefix=prefix).stdout)
    assert f2 in plan["backups_kept"] and i2 in plan["backups_kept"], plan
    assert f1 in plan["backups_deleted"] and i1 in plan["backups_deleted"], plan
    d = wale("delete", "--confirm", "retain", "1", prefix=prefix)
    assert d.returncode == 0, d.stderr.decode()
    names = [b["name"] for b in json.loads(wale("backup-list", "--json", prefix=prefix).stdout)]
    assert sorted(names) == sorted([f2, i2])
    assert not os.path.exists(os.path.join(adir, "basebackups_005", i1))


def test_damage_in_a_parent_is_found_when_a_child_is_restored(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c, full, inc = full_and_incremental(make_cluster, wale, prefix, 18)
    parts = os.path.join(adir, "basebackups_005", full, "tar_partitions")
    victim = os.path.join(parts, sorted(os.listdir(parts))[0])
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(victim, "wb").write(bytes(data))
    target = os.path.join(scratch, "damaged")
    f = wale("backup-fetch", target, inc, prefix=prefix)
    assert f.returncode == 65, f.stderr.decode()
    assert os.path.basename(victim) in f.stderr.decode()
    assert not os.path.exists(os.path.join(target, "global", "pg_control"))
    # verify of the child checks the chain it needs, and names the damaged parent partition.
    for name in (inc, full):
        v = wale("verify", name, prefix=prefix)
        assert v.returncode == 65, v.stderr.decode()
        assert os.path.basename(victim) in v.stderr.decode()
    # verify --all reads the full backup once and says the incremental's chain is broken.
    v = wale("verify", "--all", prefix=prefix)
    assert v.returncode == 65, v.stderr.decode()
    out = v.stdout.decode()
    assert f"{full}\tFAILED" in out and f"{inc}\tFAILED" in out, out
    assert f"{full}, which this incremental backup is built on, does not restore" in out, out
    assert out.count(os.path.basename(victim)) == 1, out
    # A chain whose parent is gone is refused, naming it.
    os.rename(os.path.join(adir, "basebackups_005", full + "_backup_stop_sentinel.json"), os.path.join(scratch, "moved"))
    f = wale("backup-fetch", os.path.join(scratch, "orphan"), inc, prefix=prefix)
    assert f.returncode == 65, f.stderr.decode()
    assert f"built on {full}, which is not in the archive" in f.stderr.decode()


def test_kill_during_an_incremental_push_leaves_nothing_listable(make_cluster, wale, archive, scratch):
    from test_backup_faults import popen_wale
    prefix, adir = archive
    c = incremental_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "4", "-q")
    full, _ = push(wale, c, prefix)
    c.pgbench("-c", "2", "-T", "2", "-n")
    # File level: pgbench_accounts changed, so it is stored whole, slowly under the rate limit.
    p = popen_wale(wale, ["backup-push", "--fast", "--incremental", "--cluster-read-rate-limit", "4000000", c.data], prefix, c.env())
    deadline = time.time() + 60
    while time.time() < deadline and not any(n.startswith("incr_") for n in os.listdir(os.path.join(adir, "basebackups_005"))):
        time.sleep(0.1)
    time.sleep(1.5)
    assert p.poll() is None, p.stderr.read().decode()
    p.send_signal(9)
    p.wait()
    listing = json.loads(wale("backup-list", "--json", prefix=prefix).stdout)
    assert [b["name"] for b in listing] == [full]
    # The next incremental is built on the full backup, not on the killed one.
    name, log = push(wale, c, prefix, "--incremental")
    assert name.startswith("incr_") and f"incremental over {full}" in log, log


def test_delta_restore_of_an_incremental_rebuilds_the_source_in_place(make_cluster, wale, archive, scratch):
    """--delta with a chain: files already as the chain leaves them stay, the rest are written
    (base copy, then changed blocks), files of tables dropped since any link are removed."""
    prefix, adir = archive
    c = incremental_cluster(make_cluster, wale, prefix, 18)
    c.pgbench("-i", "-s", "4", "-q")
    c.psql("CREATE TABLE dropped_later AS SELECT g FROM generate_series(1, 20000) g")
    full, _ = push(wale, c, prefix)
    c.pgbench("-c", "2", "-T", "2", "-R", "150", "-n")
    c.psql("DROP TABLE dropped_later")
    inc, _ = push(wale, c, prefix, "--incremental")
    assert inc.startswith("incr_")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('delta_inc')")
    c.wait_archived()
    c.pgbench("-c", "2", "-T", "2", "-n")
    c.psql("CREATE TABLE after_target AS SELECT g FROM generate_series(1, 50000) g")
    c.psql("CHECKPOINT")
    c.stop()
    f = wale("backup-fetch", "--delta", "--recovery-target-name", "delta_inc", "--recovery-target-action", "promote",
             c.data, inc, prefix=prefix)
    err = f.stderr.decode()
    assert f.returncode == 0, err
    line = next(l for l in err.splitlines() if "delta restore:" in l)
    kept, total = (int(x) for x in line.split("delta restore: ")[1].split(" files")[0].split(" of "))
    assert kept > total // 2, line
    c.start()
    c.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert c.table_checksums() == expected
    assert c.psql("SELECT to_regclass('after_target') IS NULL") == "t"
    assert c.psql("SELECT to_regclass('dropped_later') IS NULL") == "t"
    amcheck(c)
    # A directory the chain was restored into: --delta-trust-mtime finds every file in place by
    # size, mode and the modification time the restore gave it, and reads no partition of any
    # layer but the one holding pg_control.
    fresh = os.path.join(scratch, "chain-copy")
    assert wale("backup-fetch", fresh, inc, prefix=prefix).returncode == 0
    again = wale("backup-fetch", "--delta-trust-mtime", fresh, inc, prefix=prefix)
    err = again.stderr.decode()
    assert again.returncode == 0, err
    # Rewritten: pg_control, and the files the backup saw modified within a second of its start
    # whose final content has no checksum to compare (patched with changed blocks).
    sentinel = json.load(open(os.path.join(adir, "basebackups_005", inc + "_backup_stop_sentinel.json")))
    start = datetime.datetime.fromisoformat(sentinel["start_time"].replace("Z", "+00:00")).timestamp()
    view = json.load(open(os.path.join(adir, "basebackups_005", inc, "wal_e_cluster_manifest.json")))["files"]
    unprovable = [f["path"] for f in view if not modified_before(f, start) and "crc32c" not in f
                  and f["path"] != "global/pg_control"]
    line = next(l for l in err.splitlines() if "delta restore:" in l)
    assert f" {1 + len(unprovable)} rewritten, 0 removed" in line, (line, unprovable)
    partitions = sum(len(os.listdir(os.path.join(adir, "basebackups_005", b, "tar_partitions"))) for b in (full, inc))
    assert 1 <= err.count("restored a partition") < partitions, err


def test_a_relation_past_one_gigabyte_is_patched_in_both_segment_files(make_cluster, wale, archive, scratch):
    """A table of 1.1 GB has a second segment file (`<relfilenode>.1`): rows changed in both, its
    tail deleted and truncated away by VACUUM; the incremental patches both files (block numbers
    relative to each file, the truncation limit applied to the second) and restores exactly."""
    prefix, adir = archive
    c = incremental_cluster(make_cluster, wale, prefix, 18)
    c.psql("CREATE TABLE big (id int, pad text)")
    c.psql("INSERT INTO big SELECT g, repeat('x', 990) FROM generate_series(1, 1100000) g")
    # Hint bits and the visibility map set now, not by the VACUUM below (which would touch every page).
    c.psql("VACUUM FREEZE big")
    rel = c.psql("SELECT pg_relation_filepath('big')")
    assert os.path.getsize(os.path.join(c.data, rel)) == 1 << 30
    assert os.path.exists(os.path.join(c.data, rel + ".1"))
    full, _ = push(wale, c, prefix)
    c.psql("UPDATE big SET pad = repeat('y', 990) WHERE id % 5000 = 0")
    c.psql("DELETE FROM big WHERE id > 1080000")
    c.psql("VACUUM big")
    inc, log = push(wale, c, prefix, "--incremental")
    assert inc.startswith("incr_"), log
    members = set()
    pdir = os.path.join(adir, "basebackups_005", inc, "wal_e_manifest")
    for m in os.listdir(pdir):
        members |= {f["path"] for f in json.load(open(os.path.join(pdir, m)))["files"]}
    base = os.path.basename(rel)
    assert os.path.dirname(rel) + "/INCREMENTAL." + base in members, sorted(members)[:20]
    assert os.path.dirname(rel) + "/INCREMENTAL." + base + ".1" in members, sorted(members)[:20]
    assert stored_bytes(adir, inc) < stored_bytes(adir, full) // 5
    digest = "SELECT count(*) || ':' || sum(hashtext(id || pad)::bigint) || ':' || max(id) FROM big"
    expected = c.psql(digest)
    c.psql("SELECT pg_create_restore_point('big')")
    c.wait_archived()
    target = os.path.join(scratch, "big")
    r = make_cluster(18, "big")
    f = wale("backup-fetch", "--recovery-target-name", "big", "--recovery-target-action", "promote", target, inc, prefix=prefix)
    assert f.returncode == 0, f.stderr.decode()
    restore_config(c, target, r.port)
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.psql(digest) == expected
    assert r.psql("SELECT count(*) FROM big WHERE pad LIKE 'y%'") == "216"
    assert os.path.getsize(os.path.join(target, rel + ".1")) == os.path.getsize(os.path.join(c.data, rel + ".1"))


def test_encrypted_archive_incrementals_need_the_key_where_they_are_taken(make_cluster, wale, archive, scratch):
    """Native encryption keeps the manifests secret too: a host with only the public key cannot
    compare with the parent, so it takes a full backup and says why (never fails, never stores
    anything in clear); with the private key there, incrementals are taken, encrypted, and the
    chain restores with the key."""
    from test_encryption import keypair
    prefix, adir = archive
    priv, pub = keypair(wale, scratch, "ops")
    enc = {"WALE_ENCRYPTION_PUBLIC_KEYS": pub}
    c = make_cluster(18)
    c.initdb(archive_mode="on", archive_command="'" + wale.command_line(prefix, "wal-push %p", enc) + "'",
             wal_keep_size="'4GB'", summarize_wal="on")
    c.start()
    c.pgbench("-i", "-s", "2", "-q")
    full = backup_push(wale, c, prefix, "--fast", env=enc).stdout.decode().strip()
    c.pgbench("-c", "1", "-T", "1", "-n")
    p = backup_push(wale, c, prefix, "--fast", "--incremental", "--from", full, env=enc)
    assert p.stdout.decode().startswith("base_"), p.stderr.decode()
    assert "cannot be read here" in p.stderr.decode(), p.stderr.decode()
    p = backup_push(wale, c, prefix, "--fast", "--incremental", "--from", full,
                    env={**enc, "WALE_ENCRYPTION_PRIVATE_KEYS": priv})
    inc = p.stdout.decode().strip()
    assert inc.startswith("incr_"), p.stderr.decode()
    cm = open(os.path.join(adir, "basebackups_005", inc, "wal_e_cluster_manifest.json"), "rb").read()
    assert b"pg_control" not in cm and b'"files"' not in cm  # sealed like the partition manifests
    expected = c.table_checksums()
    c.wait_archived()
    target = os.path.join(scratch, "enc")
    f = wale("backup-fetch", "--prepare-recovery", target, inc, prefix=prefix, env={"WALE_ENCRYPTION_PRIVATE_KEYS": priv})
    assert f.returncode == 0, f.stderr.decode()
    assert "restoring the chain" in f.stderr.decode()
    r = make_cluster(18, "enc")
    restore_config(c, target, r.port)
    with open(os.path.join(target, "postgresql.auto.conf"), "a") as fh:
        fh.write("restore_command = '" + wale.command_line(prefix, 'wal-fetch "%f" "%p"', {"WALE_ENCRYPTION_PRIVATE_KEYS": priv}) + "'\n")
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected


def tree_digests(root):
    """Every regular file under root (path → sha256), and the links (path → target)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = "-> " + os.readlink(p) if os.path.islink(p) else sha256_file(p)
    return out


def test_restores_written_around_the_page_cache_are_the_same_cluster(make_cluster, wale, archive, scratch):
    """WALE_RESTORE_DIRECT=on writes the large files of a restore with O_DIRECT (off, the default,
    through the page cache): a full backup and a block-level chain (changed blocks written over directly written files) restore to exactly
    the files a restore through the page cache writes (which the tests above recover and check). A value
    that is neither on nor off is refused before anything is written."""
    prefix, adir = archive
    c, full, inc = full_and_incremental(make_cluster, wale, prefix, 18, scale=4)
    c.stop()
    for name in (full, inc):
        trees = {}
        for mode in ("on", "default"):
            target = os.path.join(scratch, f"rd_{name[:4]}_{mode}")
            f = wale("backup-fetch", target, name, prefix=prefix, env={"WALE_RESTORE_DIRECT": mode} if mode == "on" else {})
            err = f.stderr.decode()
            assert f.returncode == 0, err
            assert ("writing the large files around the page cache" in err) == (mode == "on"), err
            trees[mode] = tree_digests(target)
        assert len(trees["on"]) > 100 and trees["on"] == trees["default"], name
        big = [p for p in trees["on"] if os.path.getsize(os.path.join(scratch, f"rd_{name[:4]}_on", p)) >= 1 << 20]
        assert big, "the cluster should hold files large enough to be written directly"
    target = os.path.join(scratch, "rd_bad")
    f = wale("backup-fetch", target, inc, prefix=prefix, env={"WALE_RESTORE_DIRECT": "sometimes"})
    assert f.returncode == 1
    assert "WALE_RESTORE_DIRECT=sometimes is neither on nor off" in f.stderr.decode()
    assert not os.path.exists(target)
