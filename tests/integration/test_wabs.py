"""wabs:// (Azure Blob) on the Shared Key emulator on 127.0.0.1: archive_command, a base backup
under load, point-in-time restore with wal-fetch as restore_command, retention, clear errors."""
import os
import re
import subprocess
import time

from harness import PG, sha256_file
from test_backups import backup_push, start_recovered
from test_bad_input import SEG, make_segment
from test_wal_archiving import archiving_cluster


def test_archive_backup_and_point_in_time_restore_on_wabs(make_cluster, wale, wabs_prefix, scratch):
    c = archiving_cluster(make_cluster, wale, wabs_prefix, 15)
    c.pgbench("-i", "-s", "4", "-q")
    load = subprocess.Popen(
        [c.bin("pgbench"), "-c", "2", "-T", "6", "-n", "postgres"], env={**os.environ, **c.env()},
        preexec_fn=lambda: (os.setgid(PG.pw_gid), os.setuid(PG.pw_uid)) and None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    name = backup_push(wale, c, wabs_prefix, "--fast").stdout.decode().strip()
    assert load.wait() == 0
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('wabs_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1")
    seg = c.wait_archived()

    # Every archived segment comes back byte for byte; a re-push is decided from the metadata.
    out = os.path.join(scratch, "fetched")
    p = wale("wal-fetch", "-p", "0", seg, out, prefix=wabs_prefix)
    assert p.returncode == 0, p.stderr.decode()
    assert sha256_file(out) == sha256_file(os.path.join(c.data, "pg_wal", seg))
    p = wale("wal-push", os.path.join(c.data, "pg_wal", seg), prefix=wabs_prefix)
    assert p.returncode == 0 and "already archived with identical content" in p.stderr.decode(), p.stderr.decode()
    assert wale("wal-fetch", "-p", "0", "0000000100000000000000EE", os.path.join(scratch, "x"), prefix=wabs_prefix).returncode == 1

    # WAL-E prints WABS times as Python's str(datetime): "2017-02-01 19:58:55+00:00".
    listing = wale("backup-list", "--detail", prefix=wabs_prefix).stdout.decode()
    row = [l for l in listing.split("\r\n") if l.startswith(name + "\t")]
    assert row, listing
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00", row[0].split("\t")[1]), row

    target = os.path.join(scratch, "restored")
    r = make_cluster(15, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "wabs_target", "--recovery-target-action", "promote",
             "--restore-command", wale.command_line(wabs_prefix, 'wal-fetch "%f" "%p"'), target, "LATEST", prefix=wabs_prefix)
    assert f.returncode == 0, f.stderr.decode()
    assert "every file matched the backup manifest" in f.stderr.decode()
    start_recovered(c, r, target, expected)

    # Retention: a second backup, then retain 1 deletes the first and the WAL before the second.
    second = backup_push(wale, c, wabs_prefix, "--fast").stdout.decode().strip()
    p = wale("delete", "--confirm", "retain", "1", prefix=wabs_prefix)
    assert p.returncode == 0, p.stderr.decode()
    names = [l.split("\t")[0] for l in wale("backup-list", prefix=wabs_prefix).stdout.decode().split("\r\n")[1:-1]]
    assert names == [second]
    p = wale("wal-fetch", "-p", "0", seg, os.path.join(scratch, "gone"), prefix=wabs_prefix)
    assert p.returncode == 1, p.stderr.decode()


def test_wabs_errors_are_clear(wale, wabs_prefix, scratch):
    path = os.path.join(scratch, SEG)
    make_segment(path)
    bad_key = {"WABS_ACCESS_KEY": "d3Jvbmcga2V5IHdyb25nIGtleQ=="}
    p = wale("wal-push", path, prefix=wabs_prefix, env=bad_key, user=None)
    assert p.returncode == 1
    assert "Azure rejected the credentials of account devstoreaccount1" in p.stderr.decode(), p.stderr.decode()
    assert "d3Jvbmcga2V5" not in p.stderr.decode()  # never the key
    p = wale("wal-push", path, prefix="wabs://no-such-container/pg", user=None)
    assert p.returncode == 1 and "the container no-such-container does not exist" in p.stderr.decode(), p.stderr.decode()
    p = wale("wal-push", path, prefix=wabs_prefix, env={"WABS_ACCOUNT_NAME": ""}, user=None)
    assert p.returncode == 1 and "no Azure storage account" in p.stderr.decode()
    # -a/--wabs-account-name stands in for WABS_ACCOUNT_NAME, as in WAL-E.
    p = wale("-a", "devstoreaccount1", "wal-push", path, prefix=wabs_prefix, env={"WABS_ACCOUNT_NAME": ""}, user=None)
    assert p.returncode == 0, p.stderr.decode()
    # An unreachable endpoint fails in bounded time with exit 74.
    t0 = time.time()
    p = wale("wal-push", path, prefix=wabs_prefix, env={"WABS_ENDPOINT": "http://127.0.0.1:9/devstoreaccount1", "WALE_RETRIES": "2"},
             user=None, timeout=60)
    assert p.returncode == 74 and time.time() - t0 < 30, p.stderr.decode()
