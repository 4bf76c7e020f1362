"""A full file system, wherever wal-e writes: the file:// archive, pg_wal under restore_command,
a directory being restored. Each fails at once (no retries: seconds of them free no space) with a
stable status and a message naming the file system, leaves nothing half-written, and works again
once there is room. The file systems are small tmpfs mounts (the tests run as root)."""
import contextlib
import os
import subprocess
import time

import pytest

from harness import chown_pg
from test_backups import backup_push
from test_bad_input import SEG, make_segment


@contextlib.contextmanager
def small_fs(path, size):
    """A tmpfs of `size` at `path`, owned by postgres; unmounted at the end."""
    if os.geteuid() != 0:
        pytest.fail("the disk-full tests mount a tmpfs: run them as root (scripts/test.sh does)")
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path], check=True)
    try:
        chown_pg(path)
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def fill(path):
    """Fills the file system holding `path` to the last block; returns the filler's path."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def quick_failure(p, t0, status):
    err = p.stderr.decode()
    assert p.returncode == status, (p.returncode, err)
    assert time.monotonic() - t0 < 10 and "retrying" not in err, err
    assert "No space left on device" in err and "free space on the file system holding" in err, err
    assert "Traceback" not in err and "Fatal error" not in err
    return err


def leftovers(top):
    return sorted(os.path.relpath(os.path.join(d, n), top) for d, _, names in os.walk(top) for n in names)


def test_wal_push_to_a_full_archive_and_wal_fetch_into_a_full_pg_wal(wale, scratch):
    src = os.path.join(scratch, SEG)
    make_segment(src)
    with small_fs(os.path.join(scratch, "small"), "24m") as fs:
        store = os.path.join(fs, "archive")
        prefix = "file://localhost" + store
        os.makedirs(os.path.join(store, "wal_005"))
        chown_pg(store)
        chown_pg(os.path.join(store, "wal_005"))
        filler = fill(fs)
        t0 = time.monotonic()
        p = wale("wal-push", src, prefix=prefix)
        quick_failure(p, t0, 74)
        assert leftovers(store) == [], leftovers(store)  # no object, no temporary file
        os.unlink(filler)
        assert wale("wal-push", src, prefix=prefix).returncode == 0

        # restore_command writing into a full pg_wal: a status above 125 in archive recovery (stop,
        # do not promote), 74 on a standby (PostgreSQL asks again); nothing left in pg_wal.
        pg_wal = os.path.join(fs, "pg_wal")
        os.makedirs(pg_wal)
        chown_pg(pg_wal)
        filler = fill(fs)
        dest = os.path.join(pg_wal, "RECOVERYXLOG")
        for mode, status in (("archive-recovery", 202), ("standby", 74)):
            t0 = time.monotonic()
            p = wale("wal-fetch", "--recovery-mode", mode, "-p", "0", SEG, dest, prefix=prefix)
            quick_failure(p, t0, status)
            assert os.listdir(pg_wal) == [], os.listdir(pg_wal)
        os.unlink(filler)
        assert wale("wal-fetch", "-p", "0", SEG, dest, prefix=prefix).returncode == 0
        assert open(dest, "rb").read() == open(src, "rb").read()


def test_backup_push_to_a_full_archive_and_backup_fetch_into_a_full_directory(make_cluster, wale, archive, scratch):
    prefix, _ = archive
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'" + wale.command_line(prefix, "wal-push %p") + "'")
    c.start()
    c.pgbench("-i", "-s", "2", "-q")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip() or None

    with small_fs(os.path.join(scratch, "small"), "16m") as fs:
        # backup-push: no backup listed, nothing left on the archive's file system but the filler.
        full = "file://localhost" + os.path.join(fs, "archive")
        filler = fill(fs)
        t0 = time.monotonic()
        p = wale("backup-push", "--fast", c.data, prefix=full, env=c.env())
        quick_failure(p, t0, 74)
        out = wale("backup-list", prefix=full).stdout.decode().split("\r\n")
        assert out[1:] == [""], out
        os.unlink(filler)

        # backup-fetch into a directory on a file system too small for the cluster (~35 MB):
        # status 74 at once, and no global/pg_control, so no server can start on the half.
        target = os.path.join(fs, "restore")
        os.makedirs(target, mode=0o700)
        chown_pg(target)
        t0 = time.monotonic()
        p = wale("backup-fetch", target, "LATEST", prefix=prefix)
        quick_failure(p, t0, 74)
        assert not os.path.exists(os.path.join(target, "global", "pg_control"))
    # With room, the same backup restores (the failed attempts changed nothing in the archive).
    target = os.path.join(scratch, "restore-ok")
    p = wale("backup-fetch", target, "LATEST", prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    assert os.path.exists(os.path.join(target, "global", "pg_control"))
    assert name is None or os.path.exists(os.path.join(target, "PG_VERSION"))


def test_read_only_file_system_is_a_user_error_without_retries(wale, scratch):
    """A read-only archive or pg_wal (EROFS) is the operator's to fix: exit 1 for wal-push, 129 for
    wal-fetch in either recovery mode (never 1: that would end recovery), at once, nothing written."""
    src = os.path.join(scratch, SEG)
    make_segment(src)
    good = "file://localhost" + os.path.join(scratch, "archive")
    assert wale("wal-push", src, prefix=good).returncode == 0
    with small_fs(os.path.join(scratch, "ro"), "8m") as fs:
        for d in ("archive/wal_005", "pg_wal"):
            os.makedirs(os.path.join(fs, d))
            chown_pg(os.path.join(fs, d))
        subprocess.run(["mount", "-o", "remount,ro", fs], check=True)
        t0 = time.monotonic()
        p = wale("wal-push", src, prefix="file://localhost" + os.path.join(fs, "archive"))
        err = p.stderr.decode()
        assert p.returncode == 1 and "Read-only file system" in err and "retrying" not in err, (p.returncode, err)
        for mode in ("archive-recovery", "standby"):
            p = wale("wal-fetch", "--recovery-mode", mode, "-p", "0", SEG, os.path.join(fs, "pg_wal", "RECOVERYXLOG"), prefix=good)
            err = p.stderr.decode()
            assert p.returncode == 129, (mode, p.returncode, err)
            assert "Read-only file system" in err and "retrying" not in err, err
        assert time.monotonic() - t0 < 15
        assert leftovers(fs) == []
