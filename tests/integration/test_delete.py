"""delete on a real archive with backups on timelines 1 and 2 (from a real promote)."""
import os
import re
import subprocess

from harness import chown_pg, run
from test_backups import backup_push, restore_config
from test_wal_archiving import archiving_cluster
from test_wale_interop import WALE_PEER, peer_env


def archive_keys(adir):
    out = set()
    for root, _, files in os.walk(adir):
        for f in files:
            if not f.startswith(".wal-e-tmp"):
                out.add(os.path.relpath(os.path.join(root, f), adir))
    return out


def planned_keys(stderr, adir):
    return {os.path.relpath(m, adir) for m in re.findall(r"The key being deleted is file://localhost(\S+)\.\n", stderr)}


def recover_to_end(make_cluster, wale, prefix, source, name, target, expected):
    f = wale("backup-fetch", "--prepare-recovery", target, name, prefix=prefix)
    assert f.returncode == 0, f.stderr.decode()
    r = make_cluster(15, os.path.basename(target))
    restore_config(source, target, r.port)
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
    r.stop()


def test_delete_across_timelines(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "2", "-q")
    a = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    c.pgbench("-c", "2", "-T", "2", "-n")
    c.psql("SELECT pg_switch_wal()")
    b = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    c.pgbench("-c", "2", "-T", "2", "-n")
    c.wait_archived()
    c.stop()

    # Restore B and promote: timeline 2, archiving into the same prefix.
    t2 = os.path.join(scratch, "tl2")
    assert wale("backup-fetch", "--prepare-recovery", t2, b, prefix=prefix).returncode == 0
    p2 = make_cluster(15, "tl2")
    restore_config(c, t2, p2.port)
    with open(os.path.join(t2, "postgresql.auto.conf"), "a") as f:
        f.write("archive_mode = on\n")
    p2.start()
    p2.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert p2.psql("SELECT timeline_id FROM pg_control_checkpoint()") in ("2", "1")
    p2.psql("CHECKPOINT")
    assert p2.psql("SELECT timeline_id FROM pg_control_checkpoint()") == "2"
    p2.pgbench("-c", "2", "-T", "2", "-n")
    cbak = backup_push(wale, p2, prefix, "--fast").stdout.decode().strip()
    assert cbak.startswith("base_00000002")
    p2.pgbench("-c", "2", "-T", "2", "-n")
    expected_end = p2.table_checksums()
    p2.wait_archived()
    p2.stop()
    assert "wal_005/00000002.history.lzo" in archive_keys(adir)

    # retain 0 is refused; the default is a dry run that deletes nothing.
    p = wale("delete", "--confirm", "retain", "0", prefix=prefix)
    assert p.returncode == 1 and "refusing to retain 0" in p.stderr.decode()
    before = archive_keys(adir)
    dry = wale("delete", "retain", "2", prefix=prefix)
    assert dry.returncode == 0, dry.stderr.decode()
    assert "This is only a dry run -- no actual data is being deleted" in dry.stderr.decode()
    assert archive_keys(adir) == before
    plan = planned_keys(dry.stderr.decode(), adir)
    assert any(k.startswith(f"basebackups_005/{a}") for k in plan)
    assert not any(b in k or cbak in k for k in plan)
    assert not any(k.endswith(".history.lzo") for k in plan)

    # The confirmed run deletes exactly what the dry run listed.
    done = wale("delete", "--confirm", "retain", "2", prefix=prefix)
    assert done.returncode == 0, done.stderr.decode()
    after = archive_keys(adir)
    assert before - after == plan
    # Twice, or two at once: the same end state.
    assert wale("delete", "--confirm", "retain", "2", prefix=prefix).returncode == 0
    assert archive_keys(adir) == after
    procs = [subprocess.Popen([wale.path, "delete", "--confirm", "retain", "2"], env={**os.environ, "WALE_FILE_PREFIX": prefix,
                              "WALE_LOG_DESTINATION": "stderr"}, stderr=subprocess.PIPE) for _ in range(2)]
    assert all(p.wait() == 0 for p in procs)
    assert archive_keys(adir) == after

    listed = [l.split("\t")[0] for l in wale("backup-list", prefix=prefix).stdout.decode().split("\r\n")[1:-1]]
    assert sorted(listed) == sorted([b, cbak])
    # Both remaining backups restore and recover to the end of the newest timeline.
    recover_to_end(make_cluster, wale, prefix, c, b, os.path.join(scratch, "rb"), expected_end)
    recover_to_end(make_cluster, wale, prefix, c, cbak, os.path.join(scratch, "rc"), expected_end)
    # WAL-E 1.1.1 still lists and restores what remains.
    wl = run([WALE_PEER, "backup-list"], user="postgres", env=peer_env(prefix)).stdout.decode()
    assert b in wl and cbak in wl and a not in wl
    p = run([WALE_PEER, "backup-fetch", os.path.join(scratch, "wale_rc"), cbak], user="postgres", env=peer_env(prefix), check=False)
    assert p.returncode == 0, p.stderr.decode()

    # before <backup>: deletes B, keeps C and the WAL from C's start on.
    p = wale("delete", "--confirm", "before", cbak, prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    listed = [l.split("\t")[0] for l in wale("backup-list", prefix=prefix).stdout.decode().split("\r\n")[1:-1]]
    assert listed == [cbak]
    recover_to_end(make_cluster, wale, prefix, c, cbak, os.path.join(scratch, "rc2"), expected_end)


def test_permanent_backups_and_everything(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "1", "-q")
    keep = backup_push(wale, c, prefix, "--fast", "--permanent").stdout.decode().strip()
    c.pgbench("-c", "1", "-T", "1", "-n")
    other = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    c.wait_archived()
    p = wale("delete", "--confirm", "everything", prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    listed = [l.split("\t")[0] for l in wale("backup-list", prefix=prefix).stdout.decode().split("\r\n")[1:-1]]
    assert listed == [keep]
    assert wale("backup-mark", "--unmark", keep, prefix=prefix).returncode == 0
    assert wale("delete", "--confirm", "everything", prefix=prefix).returncode == 0
    assert wale("backup-list", prefix=prefix).stdout.decode().count("\r\n") == 1
    p = wale("delete", "--confirm", "old-versions", prefix=prefix)
    assert p.returncode == 1 and "no complete backup in the current format" in p.stderr.decode()
    assert wale("delete", prefix=prefix).returncode == 1


def s3_keys(prefix):
    """Every key under an s3:// prefix, via ListObjectsV2 (curl, SigV4)."""
    import urllib.parse
    from harness import s3_env
    e = s3_env()
    bucket, _, path = prefix[len("s3://"):].partition("/")
    base = os.environ["WALE_TEST_S3_ENDPOINT"].replace("http+path://", "http://")
    keys, token = set(), None
    while True:
        q = "list-type=2&prefix=" + urllib.parse.quote(path, safe="")
        if token:
            q += "&continuation-token=" + urllib.parse.quote(token, safe="")
        out = subprocess.run(["curl", "-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                              f"{e['AWS_ACCESS_KEY_ID']}:{e['AWS_SECRET_ACCESS_KEY']}", f"{base}/{bucket}?{q}"],
                             capture_output=True, check=True).stdout.decode()
        keys |= set(re.findall(r"<Key>([^<]+)</Key>", out))
        m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", out)
        if "<IsTruncated>true</IsTruncated>" not in out or not m:
            return keys
        token = m.group(1)


def test_delete_on_s3(make_cluster, wale, s3_prefix, scratch):
    c = archiving_cluster(make_cluster, wale, s3_prefix, 15)
    c.pgbench("-i", "-s", "1", "-q")
    old = backup_push(wale, c, s3_prefix, "--fast").stdout.decode().strip()
    c.pgbench("-c", "2", "-T", "2", "-n")
    c.psql("SELECT pg_switch_wal()")
    new = backup_push(wale, c, s3_prefix, "--fast").stdout.decode().strip()
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.wait_archived()
    c.stop()

    before = s3_keys(s3_prefix)
    dry = wale("delete", "retain", "1", prefix=s3_prefix)
    assert dry.returncode == 0, dry.stderr.decode()
    assert s3_keys(s3_prefix) == before
    bucket = s3_prefix[len("s3://"):].partition("/")[0]
    planned = set(re.findall(rf"The key being deleted is s3://{bucket}/(\S+)\.\n", dry.stderr.decode()))
    assert any(old in k for k in planned) and not any(new in k for k in planned)
    assert wale("delete", "--confirm", "retain", "1", prefix=s3_prefix).returncode == 0
    after = s3_keys(s3_prefix)
    assert before - after == planned
    assert wale("delete", "--confirm", "retain", "1", prefix=s3_prefix).returncode == 0
    assert s3_keys(s3_prefix) == after
    target = os.path.join(scratch, "r_s3")
    f = wale("backup-fetch", target, "LATEST", prefix=s3_prefix)
    assert f.returncode == 0, f.stderr.decode()
    r = make_cluster(15, "r_s3")
    restore_config(c, target, r.port)
    with open(os.path.join(target, "postgresql.auto.conf"), "a") as conf:
        conf.write("restore_command = '" + wale.command_line(s3_prefix, 'wal-fetch "%f" "%p"') + "'\n")
    open(os.path.join(target, "recovery.signal"), "w").close()
    chown_pg(os.path.join(target, "recovery.signal"))
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
