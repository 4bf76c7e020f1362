"""swift:// (OpenStack Swift) on a one-node SAIO from Debian's packages, with TempAuth (v1) and a small
Keystone (v2, v3) on 127.0.0.1: archive_command, a base backup under load stored as Static Large
Objects, point-in-time restore with wal-fetch as restore_command on PostgreSQL 15 and 18, retention
removing the segments too, Keystone auth, and faults through the fault proxy."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from harness import PG, sha256_file, swift_env, swift_request
from test_backups import backup_push, start_recovered
from test_bad_input import SEG, make_segment
from test_wal_archiving import archiving_cluster

HERE = os.path.dirname(os.path.abspath(__file__))
# Segments of 1 MiB: every base backup partition becomes a Static Large Object.
SLO = {"WALE_SWIFT_SEGMENT_MIB": "1"}


def container_names(container, prefix=""):
    status, body = swift_request("GET", f"/{container}?format=json&prefix={prefix}")
    return [o["name"] for o in json.loads(body)] if status == 200 else []


def test_archive_backup_and_point_in_time_restore_on_swift(make_cluster, wale, swift_prefix, scratch, pg_version):
    container = swift_prefix.split("/")[2]
    c = archiving_cluster(make_cluster, wale, swift_prefix, pg_version)
    c.pgbench("-i", "-s", "4", "-q")
    load = subprocess.Popen(
        [c.bin("pgbench"), "-c", "2", "-T", "6", "-n", "postgres"], env={**os.environ, **c.env()},
        preexec_fn=lambda: (os.setgid(PG.pw_gid), os.setuid(PG.pw_uid)) and None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    name = backup_push(wale, c, swift_prefix, "--fast", env=SLO).stdout.decode().strip()
    assert load.wait() == 0
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('swift_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1")
    seg = c.wait_archived()

    # WAL-E's names: a leading "/" (so WAL-E 1.1 finds them); partitions are large objects.
    names = container_names(container)
    assert f"/pg/wal_005/{seg}.lzo" in names, names[:5]
    assert any(n.startswith(f"/pg/basebackups_005/{name}/tar_partitions/") for n in names)
    assert container_names(container + "_segments"), "no Static Large Object segments: WALE_SWIFT_SEGMENT_MIB=1 was not used"

    out = os.path.join(scratch, "fetched")
    p = wale("wal-fetch", "-p", "0", seg, out, prefix=swift_prefix)
    assert p.returncode == 0, p.stderr.decode()
    assert sha256_file(out) == sha256_file(os.path.join(c.data, "pg_wal", seg))
    # A repeated push is decided from one HEAD (the raw segment's digest in the metadata).
    p = wale("wal-push", os.path.join(c.data, "pg_wal", seg), prefix=swift_prefix)
    assert p.returncode == 0 and "already archived with identical content" in p.stderr.decode(), p.stderr.decode()
    assert wale("wal-fetch", "-p", "0", "0000000100000000000000EE", os.path.join(scratch, "x"), prefix=swift_prefix).returncode == 1

    # WAL-E prints Swift's listing time as it is: "2017-02-01T19:58:55.123450".
    listing = wale("backup-list", "--detail", prefix=swift_prefix).stdout.decode()
    row = [l for l in listing.split("\r\n") if l.startswith(name + "\t")]
    assert row, listing
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", row[0].split("\t")[1]), row

    target = os.path.join(scratch, "restored")
    r = make_cluster(pg_version, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "swift_target", "--recovery-target-action", "promote",
             "--restore-command", wale.command_line(swift_prefix, 'wal-fetch "%f" "%p"'), target, "LATEST", prefix=swift_prefix)
    assert f.returncode == 0, f.stderr.decode()
    assert "every file matched the backup manifest" in f.stderr.decode()
    start_recovered(c, r, target, expected)

    # Retention: a second backup, then retain 1 deletes the first (its segments too) and old WAL.
    first_segments = set(container_names(container + "_segments"))
    second = backup_push(wale, c, swift_prefix, "--fast", env=SLO).stdout.decode().strip()
    p = wale("delete", "--confirm", "retain", "1", prefix=swift_prefix)
    assert p.returncode == 0, p.stderr.decode()
    listed = [l.split("\t")[0] for l in wale("backup-list", prefix=swift_prefix).stdout.decode().split("\r\n")[1:-1]]
    assert listed == [second]
    assert not first_segments & set(container_names(container + "_segments")), "segments of a deleted backup remain"
    assert wale("wal-fetch", "-p", "0", seg, os.path.join(scratch, "gone"), prefix=swift_prefix).returncode == 1


@pytest.mark.parametrize("auth", ["v2", "v3", "v3-ids"])
def test_keystone_auth(wale, swift_prefix, scratch, auth):
    path = os.path.join(scratch, SEG)
    make_segment(path)
    env = swift_env(auth[:2])
    if auth == "v3-ids":
        env = {**env, "SWIFT_TENANT": "", "SWIFT_PROJECT_ID": "test-id", "SWIFT_USER_ID": "tester-id"}
    p = wale("wal-push", path, prefix=swift_prefix, env=env, user=None)
    assert p.returncode == 0, p.stderr.decode()
    p = wale("wal-fetch", "-p", "0", SEG, os.path.join(scratch, "back"), prefix=swift_prefix, env=env, user=None)
    assert p.returncode == 0, p.stderr.decode()
    assert sha256_file(os.path.join(scratch, "back")) == sha256_file(path)
    # A wrong password or project: a configuration error, named, never the password.
    for bad in ({"SWIFT_PASSWORD": "s3cr3t-wrong"}, {"SWIFT_TENANT": "other", "SWIFT_PROJECT_ID": ""}):
        if auth == "v3-ids" and "SWIFT_TENANT" in bad:
            bad = {"SWIFT_PROJECT_ID": "other-id"}
        p = wale("wal-push", path, prefix=swift_prefix, env={**env, **bad}, user=None)
        err = p.stderr.decode()
        assert p.returncode == 1 and "Swift authentication" in err and "refused" in err, err
        assert "s3cr3t-wrong" not in err
        p = wale("wal-fetch", SEG, os.path.join(scratch, "no"), prefix=swift_prefix, env={**env, **bad}, user=None)
        assert p.returncode == 129, p.stderr.decode()  # fatal for recovery, not "not in the archive"
    # A region the catalog does not have.
    p = wale("wal-push", path, prefix=swift_prefix, env={**env, "SWIFT_REGION": "Elsewhere"}, user=None)
    assert p.returncode == 1 and "no object-store endpoint" in p.stderr.decode(), p.stderr.decode()


def test_swift_configuration_errors(wale, swift_prefix, scratch):
    path = os.path.join(scratch, SEG)
    make_segment(path)
    for env, text in (({"SWIFT_AUTHURL": ""}, "SWIFT_AUTHURL is not set"), ({"SWIFT_PASSWORD": ""}, "SWIFT_PASSWORD is not set"),
                      ({"SWIFT_AUTH_VERSION": "4"}, "SWIFT_AUTH_VERSION=4"), ({"SWIFT_AUTHURL": "ftp://x"}, "not an http"),
                      ({"SWIFT_AUTHURL": os.environ["WALE_TEST_KEYSTONE_URL"] + "/v1.0"}, "answered 404")):
        p = wale("wal-push", path, prefix=swift_prefix, env=env, user=None)
        assert p.returncode == 1 and text in p.stderr.decode(), (env, p.stderr.decode())
        p = wale("wal-fetch", SEG, os.path.join(scratch, "no"), prefix=swift_prefix, env=env, user=None)
        assert p.returncode == 129, (env, p.stderr.decode())
    # A missing container: wal-fetch must not say "not in the archive" (that would end recovery).
    p = wale("wal-fetch", SEG, os.path.join(scratch, "no"), prefix="swift://no-such-container/pg", user=None)
    assert p.returncode == 129 and "the container no-such-container does not exist" in p.stderr.decode(), p.stderr.decode()
    p = wale("wal-push", path, prefix="swift://no-such-container/pg", user=None)
    assert p.returncode == 1 and "does not exist" in p.stderr.decode(), p.stderr.decode()
    # WAL is never overwritten with different bytes.
    assert wale("wal-push", path, prefix=swift_prefix, user=None).returncode == 0
    before = swift_request("GET", f"/{swift_prefix.split('/')[2]}//pg/wal_005/{SEG}.lzo")
    with open(path, "r+b") as f:
        f.seek(8192 + 100)
        f.write(b"different")
    p = wale("wal-push", path, prefix=swift_prefix, user=None)
    assert p.returncode != 0 and "different" in p.stderr.decode(), (p.returncode, p.stderr.decode())
    assert swift_request("GET", f"/{swift_prefix.split('/')[2]}//pg/wal_005/{SEG}.lzo") == before


class Proxy:
    """tests/integration/faultproxy.py in front of the SAIO (it rewrites the storage URL to itself)."""

    def __init__(self, mode, count=0):
        port = int(os.environ["WALE_TEST_SWIFT_PORT"])
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "faultproxy.py"), mode, str(count), str(port)],
                                  stdout=subprocess.PIPE, env={**os.environ, "FAULTPROXY_REWRITE": "1"})
        self.port = int(self.p.stdout.readline())
        self.env = {**swift_env(), "SWIFT_AUTHURL": f"http://127.0.0.1:{self.port}/auth/v1.0"}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.p.kill()
        self.p.wait()


@pytest.mark.xdist_group("fault-timing")
def test_swift_faults(wale, swift_prefix, scratch):
    path = os.path.join(scratch, SEG)
    make_segment(path)
    quick = {"WALE_RETRIES": "3", "WALE_SWIFT_REQUEST_TIMEOUT": "5", "WALE_STALL_TIMEOUT": "4"}
    # Where a fault must be survived, room for a loaded machine (the bound is tested with quick).
    patient = {"WALE_RETRIES": "3", "WALE_SWIFT_REQUEST_TIMEOUT": "30", "WALE_STALL_TIMEOUT": "30"}
    # 5xx: retried, then success.
    with Proxy("errors", 2) as px:
        p = wale("wal-push", path, prefix=swift_prefix, env={**px.env, **patient}, user=None)
        assert p.returncode == 0 and "retrying" in p.stderr.decode(), p.stderr.decode()
    # A revoked token (Swift answers 401): one re-authentication, then success.
    with Proxy("unauthorized", 1) as px:
        p = wale("wal-fetch", "-p", "0", SEG, os.path.join(scratch, "back"), prefix=swift_prefix, env={**px.env, **patient}, user=None)
        assert p.returncode == 0 and "authenticating again" in p.stderr.decode(), p.stderr.decode()
    # A token Swift keeps refusing: a configuration error, fatal for recovery.
    with Proxy("unauthorized", 100) as px:
        p = wale("wal-fetch", "-p", "0", SEG, os.path.join(scratch, "back2"), prefix=swift_prefix, env={**px.env, **quick}, user=None)
        assert p.returncode == 129 and "refused a fresh token" in p.stderr.decode(), p.stderr.decode()
    # Resets in the middle of uploads: each PUT (a whole segment, a large object's segment) is
    # retried on its own; what is visible is whole.
    with Proxy("reset-upload", 2) as px:
        p = wale("wal-push", path, prefix=swift_prefix + "3", env={**px.env, **patient}, user=None)
        assert p.returncode == 0 and "retrying" in p.stderr.decode(), p.stderr.decode()
    p = wale("wal-fetch", "-p", "0", SEG, os.path.join(scratch, "back3"), prefix=swift_prefix + "3", user=None)
    assert p.returncode == 0 and sha256_file(os.path.join(scratch, "back3")) == sha256_file(path)
    # A stalled server: bounded time, exit 74 (wal-push) and 202 (wal-fetch in archive recovery).
    with Proxy("stall") as px:
        t0 = time.time()
        p = wale("wal-push", path, prefix=swift_prefix + "2", env={**px.env, **quick}, user=None, timeout=120)
        assert p.returncode == 74 and time.time() - t0 < 60, (p.returncode, time.time() - t0, p.stderr.decode())
        t0 = time.time()
        p = wale("wal-fetch", SEG, os.path.join(scratch, "x"), prefix=swift_prefix, env={**px.env, **quick}, user=None, timeout=120)
        assert p.returncode == 202 and time.time() - t0 < 60, (p.returncode, time.time() - t0, p.stderr.decode())


def test_swift_backup_push_survives_resets_mid_segment(make_cluster, wale, swift_prefix, scratch):
    c = make_cluster(15)
    c.initdb()
    c.start()
    c.pgbench("-i", "-s", "2", "-q")
    with Proxy("reset-upload", 3) as px:
        p = wale("backup-push", c.data, prefix=swift_prefix, env={**c.env(), **px.env, **SLO, "WALE_RETRIES": "4"})
        assert p.returncode == 0 and "retrying" in p.stderr.decode(), p.stderr.decode()
    target = os.path.join(scratch, "restored")
    f = wale("backup-fetch", target, "LATEST", prefix=swift_prefix)
    assert f.returncode == 0 and "every file matched the backup manifest" in f.stderr.decode(), f.stderr.decode()
