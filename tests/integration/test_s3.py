"""The real-PostgreSQL tests again with an s3:// prefix on SeaweedFS (SigV4 checked, SSE on)."""
import os
import subprocess
import time

from harness import PG, chown_pg, run, sha256_file
from test_backups import amcheck, backup_push, restore_config
from test_wal_archiving import archiving_cluster


def test_archive_command_on_s3_every_segment_identical(make_cluster, wale, s3_prefix, scratch, pg_version):
    c = archiving_cluster(make_cluster, wale, s3_prefix, pg_version)
    c.pgbench("-i", "-s", "3", "-q")
    c.pgbench("-c", "2", "-T", "4", "-n")
    last = c.wait_archived()
    segments = [s for s in c.wal_segments() if s <= last]
    out = os.path.join(scratch, "fetched")
    os.makedirs(out)
    chown_pg(out)
    for seg in segments:
        p = wale("wal-fetch", "-p", "0", seg, os.path.join(out, seg), prefix=s3_prefix)
        assert p.returncode == 0, p.stderr.decode()
        assert sha256_file(os.path.join(out, seg)) == sha256_file(os.path.join(c.data, "pg_wal", seg)), seg
    # Re-pushing an archived segment is a no-op; different bytes are refused.
    first = os.path.join(c.data, "pg_wal", segments[0])
    p = wale("wal-push", first, prefix=s3_prefix)
    assert p.returncode == 0 and "already archived with identical content" in p.stderr.decode()
    missing = wale("wal-fetch", "-p", "0", "0000000100000000000000EE", os.path.join(out, "x"), prefix=s3_prefix)
    assert missing.returncode == 1


def test_point_in_time_restore_on_s3(make_cluster, wale, s3_prefix, scratch, pg_version):
    c = archiving_cluster(make_cluster, wale, s3_prefix, pg_version)
    c.pgbench("-i", "-s", "4", "-q")
    load = subprocess.Popen(
        [c.bin("pgbench"), "-c", "2", "-T", "8", "-n", "postgres"], env={**os.environ, **c.env()},
        preexec_fn=lambda: (os.setgid(PG.pw_gid), os.setuid(PG.pw_uid)) and None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    name = backup_push(wale, c, s3_prefix, "--fast").stdout.decode().strip()
    assert load.wait() == 0
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('s3_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1")
    c.wait_archived()

    listing = wale("backup-list", "--detail", prefix=s3_prefix).stdout.decode()
    assert f"\r\n{name}\t" in listing and listing.endswith("\r\n")
    target = os.path.join(scratch, "restored")
    r = make_cluster(pg_version, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "s3_target", "--recovery-target-action", "promote", target, "LATEST",
             prefix=s3_prefix)
    assert f.returncode == 0, f.stderr.decode()
    restore_config(c, target, r.port)
    # restore_command as backup-fetch wrote it needs the S3 settings in PostgreSQL's environment:
    # give it the same command with them, as an envdir would.
    with open(os.path.join(target, "postgresql.auto.conf"), "a") as conf:
        conf.write("restore_command = '" + wale.command_line(s3_prefix, 'wal-fetch "%f" "%p"') + "'\n")
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
    assert r.psql("SELECT to_regclass('after_target') IS NULL") == "t"
    amcheck(r)


def test_s3_errors_are_clear(wale, scratch):
    bad = wale("backup-list", prefix="s3://no-such-bucket-here/x")
    assert bad.returncode == 1 and "the bucket no-such-bucket-here does not exist" in bad.stderr.decode()
    wrong = wale("backup-list", prefix="s3://no-such-bucket-here/x", env={"AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    assert wrong.returncode == 1
    assert "signature" in wrong.stderr.decode() and "wrong-secret" not in wrong.stderr.decode()
    nocreds = wale("backup-list", prefix="s3://b/x", env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert nocreds.returncode == 1 and "no AWS credentials" in nocreds.stderr.decode()
    badend = wale("backup-list", prefix="s3://b/x", env={"WALE_S3_ENDPOINT": "http+path://u@host/x"})
    assert badend.returncode == 1 and "is not of the form" in badend.stderr.decode()


def start_proxy(mode, count=0):
    import sys
    port = os.environ["WALE_TEST_S3_ENDPOINT"].rsplit(":", 1)[1]
    p = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "faultproxy.py"), mode, str(count), port],
                         stdout=subprocess.PIPE)
    return p, int(p.stdout.readline())


def segment_file(scratch, name="000000010000000000000003"):
    from test_bad_input import make_segment
    src = os.path.join(scratch, name)
    make_segment(src, name=name)
    return src


def test_s3_faults_retry_or_fail_in_bounded_time(wale, s3_prefix, scratch):
    src = segment_file(scratch)
    for mode, count in (("errors", 2), ("reset", 1)):
        proxy, port = start_proxy(mode, count)
        try:
            env = {"WALE_S3_ENDPOINT": f"http+path://127.0.0.1:{port}"}
            p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
            assert p.returncode == 0, p.stderr.decode()
            assert "retrying" in p.stderr.decode()
            dest = os.path.join(scratch, f"got-{mode}")
            assert wale("wal-fetch", "-p", "0", os.path.basename(src), dest, prefix=s3_prefix, user=None).returncode == 0
            assert open(dest, "rb").read() == open(src, "rb").read()
            os.unlink(dest)
        finally:
            proxy.kill()
        # Start over for the next mode: the object is archived now, so push another name.
        src = segment_file(scratch, "000000010000000000000004" if mode == "errors" else "000000010000000000000005")

    # A body damaged on the way: the server's checksum check refuses it (BadDigest), the PUT is
    # sent again, and what is archived is exactly the segment. Both checksums wal-e can send.
    for checksum, name in (("crc32c", "000000010000000000000007"), ("md5", "000000010000000000000008")):
        src = segment_file(scratch, name)
        proxy, port = start_proxy("corrupt", 1)
        try:
            env = {"WALE_S3_ENDPOINT": f"http+path://127.0.0.1:{port}", "WALE_S3_CHECKSUM": checksum}
            p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
            assert p.returncode == 0, p.stderr.decode()
            assert "BadDigest" in p.stderr.decode() and "retrying" in p.stderr.decode(), p.stderr.decode()
            dest = os.path.join(scratch, f"got-{checksum}")
            assert wale("wal-fetch", "-p", "0", name, dest, prefix=s3_prefix, user=None).returncode == 0
            assert open(dest, "rb").read() == open(src, "rb").read()
        finally:
            proxy.kill()
    src = segment_file(scratch, "000000010000000000000009")

    proxy, port = start_proxy("stall")
    try:
        env = {"WALE_S3_ENDPOINT": f"http+path://127.0.0.1:{port}", "WALE_S3_REQUEST_TIMEOUT": "2", "WALE_RETRIES": "2"}
        t0 = time.time()
        p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None, timeout=60)
        elapsed = time.time() - t0
        assert p.returncode == 74, p.stderr.decode()
        assert elapsed < 20, elapsed
        t0 = time.time()
        f = wale("wal-fetch", "-p", "0", "000000010000000000000006", os.path.join(scratch, "never"), prefix=s3_prefix, env=env,
                 user=None, timeout=60)
        assert f.returncode == 202 and time.time() - t0 < 20  # 74 + 128: fatal for archive recovery
        assert not os.path.exists(os.path.join(scratch, "never"))
    finally:
        proxy.kill()
