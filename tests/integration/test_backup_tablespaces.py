"""A cluster with a user tablespace, restored three ways."""
import json
import os

import pytest

from harness import chown_pg
from test_backups import backup_push, restore_config
from test_wal_archiving import archiving_cluster


@pytest.fixture
def ts_cluster(make_cluster, wale, archive, scratch):
    prefix, _ = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    loc = os.path.join(scratch, "ts_source")
    os.makedirs(loc)
    chown_pg(loc)
    c.psql(f"CREATE TABLESPACE ts1 LOCATION '{loc}'")
    c.psql("CREATE TABLE in_ts TABLESPACE ts1 AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g")
    c.psql("CREATE INDEX in_ts_idx ON in_ts (h) TABLESPACE ts1")
    oid = c.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    c.psql("INSERT INTO in_ts SELECT g, 'after' FROM generate_series(20001, 20100) g")
    expected = c.table_checksums()
    c.wait_archived()
    return c, oid, loc, name, expected


def start_and_check(make_cluster, c, target, expected):
    r = make_cluster(15, os.path.basename(target))
    restore_config(c, target, r.port)
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
    assert r.psql("SELECT count(*) FROM in_ts WHERE h = 'after'") == "100"
    loc = r.psql("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'")
    r.stop()
    return loc


def test_sentinel_describes_the_tablespace(ts_cluster, archive):
    c, oid, loc, name, _ = ts_cluster
    _, adir = archive
    s = json.load(open(os.path.join(adir, "basebackups_005", name + "_backup_stop_sentinel.json")))
    assert s["spec"]["tablespaces"] == [oid]
    assert s["spec"][oid] == {"loc": loc + "/", "link": f"pg_tblspc/{oid}"}


def test_restore_with_premade_symlinks(ts_cluster, wale, archive, scratch, make_cluster):
    c, oid, loc, name, expected = ts_cluster
    prefix, _ = archive
    target = os.path.join(scratch, "r_links")
    new_loc = os.path.join(scratch, "ts_links")
    for d in (target, os.path.join(target, "pg_tblspc"), new_loc):
        os.makedirs(d)
        chown_pg(d)
    os.chmod(target, 0o700)
    os.symlink(new_loc, os.path.join(target, "pg_tblspc", oid))
    # Without the link the restore is refused, naming what is missing.
    bare = os.path.join(scratch, "r_bare")
    p = wale("backup-fetch", bare, name, prefix=prefix)
    assert p.returncode == 1 and "Symlinks for some tablespaces not found" in p.stderr.decode()
    p = wale("backup-fetch", "--prepare-recovery", target, name, prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    assert os.listdir(new_loc), "tablespace data must land in the linked location"
    assert open(os.path.join(target, "tablespace_map")).read() == f"{oid} {new_loc}\n"
    assert start_and_check(make_cluster, c, target, expected) == new_loc


def test_blind_restore(ts_cluster, wale, archive, scratch, make_cluster):
    c, oid, loc, name, expected = ts_cluster
    prefix, _ = archive
    target = os.path.join(scratch, "r_blind")
    p = wale("backup-fetch", "--blind-restore", "--prepare-recovery", target, name, prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    ts = os.path.join(target, "pg_tblspc", oid)
    assert os.path.isdir(ts) and not os.path.islink(ts)
    assert not os.path.exists(os.path.join(target, "tablespace_map"))  # would make PostgreSQL re-link to the source
    start_and_check(make_cluster, c, target, expected)


def test_restore_spec_file(ts_cluster, wale, archive, scratch, make_cluster):
    c, oid, loc, name, expected = ts_cluster
    prefix, _ = archive
    target = os.path.join(scratch, "r_spec")
    new_loc = os.path.join(scratch, "ts_spec")
    spec = os.path.join(scratch, "spec.json")
    # No base_prefix: the restore goes to the command line's directory, not the source's (WAL-E #291).
    json.dump({"tablespaces": [oid], oid: {"loc": new_loc + "/", "link": f"pg_tblspc/{oid}"}}, open(spec, "w"))
    os.chmod(spec, 0o644)
    p = wale("backup-fetch", "--restore-spec", spec, "--prepare-recovery", target, name, prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    assert os.readlink(os.path.join(target, "pg_tblspc", oid)) == new_loc
    assert sorted(os.listdir(c.data)) == sorted(os.listdir(c.data))  # source untouched
    # The restored tablespace_map names the new location, so startup keeps our link (WAL-E #354).
    assert open(os.path.join(target, "tablespace_map")).read() == f"{oid} {new_loc}\n"
    assert start_and_check(make_cluster, c, target, expected) == new_loc
