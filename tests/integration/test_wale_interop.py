"""WAL-E 1.1.1 (PyPI, patched for PostgreSQL 15) and wal-e on the same file:// archive:
each restores what the other wrote, and backup-list prints the same bytes."""
import os
import shutil

import pytest

from harness import TEST_ROOT, chown_pg, run
from test_backups import backup_push, restore_config

WALE_PEER = os.path.join(TEST_ROOT, "wale-venv", "bin", "wal-e")


@pytest.fixture
def peer():
    if not os.path.exists(os.path.join(TEST_ROOT, "wale-venv", ".wal-e-ready")):
        pytest.fail("WAL-E 1.1.1 is not installed; scripts/test.sh installs it")
    return WALE_PEER


def peer_env(prefix):
    # WAL-E logs to syslog by default; there is no syslog daemon here.
    base = {"WALE_LOG_DESTINATION": "stderr", "PATH": "/usr/bin:/bin"}
    if prefix.startswith("s3://"):
        from harness import s3_env
        return {**base, "WALE_S3_PREFIX": prefix, **s3_env()}
    if prefix.startswith("swift://"):
        # WAL-E's swiftclient with TempAuth (auth v1), as our own swift:// tests use by default.
        from harness import swift_env
        return {**base, "WALE_SWIFT_PREFIX": prefix, **swift_env("v1")}
    if prefix.startswith("gs://"):
        # WAL-E's google-cloud-storage finds the service account file as Google's libraries do
        # (google.auth.default()) and sends its OAuth2 token to the token-checking proxy, which
        # STORAGE_EMULATOR_HOST points it at (it would otherwise go to storage.googleapis.com).
        from harness import gcs_env
        e = gcs_env("service_account")
        return {**base, "WALE_GS_PREFIX": prefix, "GOOGLE_APPLICATION_CREDENTIALS": e["GOOGLE_APPLICATION_CREDENTIALS"],
                "STORAGE_EMULATOR_HOST": e["WALE_GS_ENDPOINT"], "GCE_METADATA_HOST": e["GCE_METADATA_HOST"],
                "CLOUDSDK_CONFIG": e["CLOUDSDK_CONFIG"]}
    return {**base, "WALE_FILE_PREFIX": prefix}


def peer_line(peer, prefix, args):
    env = " ".join(f"{k}={v}" for k, v in sorted(peer_env(prefix).items()))
    return f"env {env} {peer} {args}"


def recover(make_cluster, c, target, restore_command, expected):
    r = make_cluster(15, os.path.basename(target))
    restore_config(c, target, r.port)
    with open(os.path.join(target, "postgresql.auto.conf"), "a") as f:
        f.write("restore_command = '" + restore_command + "'\n")
    open(os.path.join(target, "recovery.signal"), "w").close()
    chown_pg(os.path.join(target, "recovery.signal"))
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
    r.stop()
    return r


def test_wale_restores_what_we_wrote(make_cluster, wale, archive, scratch, peer):
    prefix, adir = archive
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'" + wale.command_line(prefix, "wal-push %p") + "'", wal_keep_size="'1GB'")
    c.start()
    c.pgbench("-i", "-s", "3", "-q")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    c.pgbench("-c", "2", "-T", "3", "-n")
    expected = c.table_checksums()
    c.wait_archived()

    target = os.path.join(scratch, "by_wale")
    p = run([peer, "backup-fetch", target, "LATEST"], user="postgres", env=peer_env(prefix), check=False)
    assert p.returncode == 0, p.stderr.decode()
    assert os.path.exists(os.path.join(target, "backup_label"))
    r = recover(make_cluster, c, target, peer_line(peer, prefix, 'wal-fetch "%f" "%p"'), expected)
    assert "restored log file" in open(r.log, errors="replace").read()

    wal_e_list = run([peer, "backup-list"], user="postgres", env=peer_env(prefix)).stdout
    ours = wale("backup-list", prefix=prefix).stdout
    assert ours == wal_e_list
    assert name.encode() in ours


def test_we_restore_what_wale_wrote_and_list_identically(make_cluster, wale, archive, scratch, peer):
    prefix, adir = archive
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'" + peer_line(peer, prefix, "wal-push %p") + "'", wal_keep_size="'1GB'")
    c.start()
    c.pgbench("-i", "-s", "3", "-q")
    p = run([peer, "backup-push", c.data], user="postgres", env={**peer_env(prefix), **c.env()}, check=False)
    assert p.returncode == 0, p.stderr.decode()
    c.pgbench("-c", "2", "-T", "3", "-n")
    expected = c.table_checksums()
    c.wait_archived()
    stored = os.listdir(os.path.join(adir, "wal_005"))
    assert stored and all(n.endswith(".lzo") for n in stored)

    target = os.path.join(scratch, "by_us")
    f = wale("backup-fetch", "--prepare-recovery", target, "LATEST", prefix=prefix)
    assert f.returncode == 0, f.stderr.decode()
    r = make_cluster(15, "by_us")
    restore_config(c, target, r.port)
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
    r.stop()

    # Now both tools' backups are in the archive: the listings are byte for byte the same.
    backup_push(wale, c, prefix, "--fast")
    wal_e_list = run([peer, "backup-list"], user="postgres", env=peer_env(prefix)).stdout
    ours = wale("backup-list", prefix=prefix).stdout
    assert wal_e_list.count(b"\r\n") == 3
    assert ours == wal_e_list
    for q in ("LATEST",):
        assert wale("backup-list", q, prefix=prefix).stdout == run([peer, "backup-list", q], user="postgres", env=peer_env(prefix)).stdout


@pytest.mark.parametrize("store", ["s3", "swift", "gcs"])
def test_wale_and_we_share_an_object_store_archive(request, make_cluster, wale, store, scratch, peer):
    """On each object store WAL-E 1.1.1 supports (with its own client libraries: boto, swiftclient,
    google-cloud-storage), in both directions, and backup-list byte for byte."""
    prefix = request.getfixturevalue(store + "_prefix")
    # WAL-E archives and takes a backup; we restore it and recover through our wal-fetch.
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'" + peer_line(peer, prefix, "wal-push %p") + "'", wal_keep_size="'1GB'")
    c.start()
    c.pgbench("-i", "-s", "2", "-q")
    p = run([peer, "backup-push", c.data], user="postgres", env={**peer_env(prefix), **c.env()}, check=False)
    assert p.returncode == 0, p.stderr.decode()
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.wait_archived()
    target = os.path.join(scratch, "ours")
    f = wale("backup-fetch", target, "LATEST", prefix=prefix)
    assert f.returncode == 0, f.stderr.decode()
    recover(make_cluster, c, target, wale.command_line(prefix, 'wal-fetch "%f" "%p"'), expected)

    # Now we archive and back up into the same prefix; WAL-E restores our backup and WAL.
    c.psql("ALTER SYSTEM SET archive_command = '" + wale.command_line(prefix, "wal-push %p").replace("'", "''") + "'")
    c.psql("SELECT pg_reload_conf()")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.wait_archived()
    target = os.path.join(scratch, "theirs")
    p = run([peer, "backup-fetch", target, name], user="postgres", env=peer_env(prefix), check=False)
    assert p.returncode == 0, p.stderr.decode()
    recover(make_cluster, c, target, peer_line(peer, prefix, 'wal-fetch -p 0 "%f" "%p"'), expected)

    theirs = run([peer, "backup-list"], user="postgres", env=peer_env(prefix)).stdout
    ours = wale("backup-list", prefix=prefix).stdout
    assert theirs.count(b"\r\n") == 3
    assert ours == theirs
