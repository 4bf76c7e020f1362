"""Bad input: a clear message, a stable exit code, and nothing half-written where PostgreSQL reads."""
import os
import time
import shutil
import xxhash

from harness import chown_pg, run

SEG = "000000010000000000000003"


def make_segment(path, name=SEG, seg_size=16 << 20, magic=0xD110):
    """A syntactically valid WAL segment: long page header for `name`, zero-filled."""
    tli, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    segno = log * (0x100000000 // seg_size) + seg
    header = bytearray(40)
    header[0:2] = magic.to_bytes(2, "little")
    header[2:4] = (0x0002).to_bytes(2, "little")  # XLP_LONG_HEADER
    header[4:8] = tli.to_bytes(4, "little")
    header[8:16] = (segno * seg_size).to_bytes(8, "little")
    header[24:32] = (7300000000000000001).to_bytes(8, "little")
    header[32:36] = seg_size.to_bytes(4, "little")
    header[36:40] = (8192).to_bytes(4, "little")
    with open(path, "wb") as f:
        f.write(bytes(header))
        f.write(os.urandom(4096))
        f.truncate(seg_size)


def stderr(p):
    return p.stderr.decode(errors="replace")


def test_missing_wal_file(wale, archive, scratch):
    prefix, adir = archive
    p = wale("wal-push", os.path.join(scratch, SEG), prefix=prefix)
    assert p.returncode == 1
    assert "could not find file for wal-push" in stderr(p)
    assert "No such file or directory" in stderr(p)
    assert not os.path.exists(os.path.join(adir, "wal_005"))


def test_unreadable_wal_file(wale, archive, scratch):
    prefix, adir = archive
    path = os.path.join(scratch, SEG)
    make_segment(path)
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)  # root's, the postgres user cannot read it
    p = wale("wal-push", path, prefix=prefix)
    assert p.returncode == 1
    assert "Permission denied" in stderr(p)
    assert not os.path.exists(os.path.join(adir, "wal_005", SEG + ".lzo"))


def test_file_that_is_not_wal_is_refused(wale, archive, scratch):
    prefix, adir = archive
    cases = {}
    path = os.path.join(scratch, SEG)
    with open(path, "wb") as f:
        f.write(os.urandom(16 << 20))
    cases["random bytes"] = "page magic"
    p = wale("wal-push", path, prefix=prefix, user=None)
    assert p.returncode == 4, stderr(p)
    assert "is not a valid WAL segment" in stderr(p) and "page magic" in stderr(p)

    make_segment(path, name="000000010000000000000009")  # header says another segment
    p = wale("wal-push", path, prefix=prefix, user=None)
    assert p.returncode == 4
    assert "page address" in stderr(p)

    make_segment(path)
    os.truncate(path, 8 << 20)  # truncated
    p = wale("wal-push", path, prefix=prefix, user=None)
    assert p.returncode == 4
    assert "bytes long but its header says" in stderr(p)

    weird = os.path.join(scratch, "notes.txt")
    open(weird, "w").write("hello")
    p = wale("wal-push", weird, prefix=prefix, user=None)
    assert p.returncode == 4
    assert "not a WAL file name" in stderr(p)
    assert not os.path.exists(os.path.join(adir, "wal_005"))


def test_non_default_segment_size_and_unknown_magic(wale, archive, scratch):
    prefix, adir = archive
    path = os.path.join(scratch, "000000010000000000000123")
    make_segment(path, name="000000010000000000000123", seg_size=1 << 20, magic=0xD1F0)
    p = wale("wal-push", path, prefix=prefix, user=None)
    assert p.returncode == 0, stderr(p)
    assert "unknown page magic" in stderr(p)
    dest = os.path.join(scratch, "out")
    assert wale("wal-fetch", "-p", "0", "000000010000000000000123", dest, prefix=prefix, user=None).returncode == 0
    assert open(dest, "rb").read() == open(path, "rb").read()


def test_no_prefix_and_unknown_scheme(wale, scratch):
    path = os.path.join(scratch, SEG)
    make_segment(path)
    p = wale("wal-push", path)
    assert p.returncode == 1
    assert "no storage prefix defined" in stderr(p)
    # As restore_command a configuration error must stop recovery (above 125), not read as
    # "not in the archive" (1); see test_restore_command_contract.py.
    p = wale("wal-fetch", SEG, os.path.join(scratch, "x"), env={"WALE_S3_PREFIX": "ftp://bucket/x"})
    assert p.returncode == 129
    assert 'unknown storage scheme "ftp"' in stderr(p)
    # gs:// is built in: an unreadable credentials file is a configuration error naming it
    # (the metadata host is pointed at a closed port so nothing can ever reach 169.254.169.254).
    gs = {"WALE_GS_PREFIX": "gs://bucket/x", "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json", "GCE_METADATA_HOST": "127.0.0.1:9"}
    p = wale("wal-push", path, env=gs)
    assert p.returncode == 1
    assert "GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/key.json cannot be read" in stderr(p)
    p = wale("wal-fetch", SEG, os.path.join(scratch, "x"), env=gs)
    assert p.returncode == 129, stderr(p)
    # swift:// is built in: without its auth URL it is a configuration error naming the variable.
    p = wale("wal-push", path, env={"WALE_SWIFT_PREFIX": "swift://container/x"})
    assert p.returncode == 1
    assert "SWIFT_AUTHURL is not set" in stderr(p)
    assert not os.path.exists(os.path.join(scratch, "x"))


def test_gpg_key_is_refused_rather_than_archiving_in_clear(wale, archive, scratch):
    prefix, adir = archive
    path = os.path.join(scratch, SEG)
    make_segment(path)
    p = wale("wal-push", path, prefix=prefix, env={"WALE_GPG_KEY_ID": "ABCDEF"})
    assert p.returncode == 1
    assert "gpg encryption" in stderr(p)
    assert not os.path.exists(os.path.join(adir, "wal_005"))


def test_usage_errors_exit_2(wale):
    assert wale("wal-push").returncode == 2
    assert wale("wal-fetch", "only-one").returncode == 130  # a broken restore_command: fatal for PostgreSQL
    assert wale("no-such-command").returncode == 2
    assert wale().returncode == 127
    h = wale("wal-fetch", "--help")
    assert h.returncode == 0 and b"restore_command" in h.stdout


def test_missing_segment_on_fetch_is_exit_1_and_writes_nothing(wale, archive, scratch):
    prefix, adir = archive
    os.makedirs(os.path.join(adir, "wal_005"))
    dest_dir = os.path.join(scratch, "pg_wal")
    os.makedirs(dest_dir)
    chown_pg(dest_dir)
    p = wale("wal-fetch", SEG, os.path.join(dest_dir, "RECOVERYXLOG"), prefix=prefix)
    assert p.returncode == 1
    assert "could not locate object" in stderr(p)
    assert [n for n in os.listdir(dest_dir) if n != ".wal-e"] == []


def test_fetch_into_a_missing_or_unwritable_directory_stops_recovery_at_once(wale, archive, scratch):
    """A destination PostgreSQL could never have given: no retries, a status above 125 in both
    modes (never 1, which would read as the end of the archive), the directory named."""
    prefix, _ = archive
    src = os.path.join(scratch, SEG)
    make_segment(src)
    assert wale("wal-push", src, prefix=prefix, user=None).returncode == 0
    readonly = os.path.join(scratch, "readonly")
    os.makedirs(readonly)
    os.chmod(readonly, 0o555)  # postgres cannot create the temporary file there
    for dest in (os.path.join(scratch, "no-such-dir", "RECOVERYXLOG"), os.path.join(readonly, "RECOVERYXLOG")):
        for mode, status in (("archive-recovery", 129), ("standby", 129)):
            t0 = time.monotonic()
            p = wale("wal-fetch", "--recovery-mode", mode, "-p", "0", SEG, dest, prefix=prefix)
            err = stderr(p)
            assert p.returncode == status, (dest, mode, err)
            assert "retrying" not in err and time.monotonic() - t0 < 10, err
            assert "cannot write the restored file" in err and os.path.dirname(dest) in err, err
            assert "the destination's directory must exist and be writable" in err, err
    assert os.listdir(readonly) == []


def test_corrupt_object_on_fetch(wale, archive, scratch):
    prefix, adir = archive
    src = os.path.join(scratch, SEG)
    make_segment(src)
    assert wale("wal-push", src, prefix=prefix, user=None).returncode == 0
    obj = os.path.join(adir, "wal_005", SEG + ".lzo")
    data = bytearray(open(obj, "rb").read())
    data[len(data) // 2] ^= 0x01  # flip one bit in the middle of a block
    open(obj, "wb").write(bytes(data))
    dest_dir = os.path.join(scratch, "pg_wal")
    os.makedirs(dest_dir)
    chown_pg(dest_dir)
    p = wale("wal-fetch", "-p", "0", SEG, os.path.join(dest_dir, "RECOVERYXLOG"), prefix=prefix,
             env={"WALE_RETRIES": "2"})
    # 65 + 128: as restore_command in archive recovery a corrupt object must stop recovery (see
    # test_restore_command_contract.py); on a standby it stays 65 so PostgreSQL retries.
    assert p.returncode == 193, stderr(p)
    err = stderr(p)
    assert "retrying the download" in err
    s = wale("wal-fetch", "--recovery-mode", "standby", "-p", "0", SEG, os.path.join(dest_dir, "RECOVERYXLOG"), prefix=prefix,
             env={"WALE_RETRIES": "1"})
    assert s.returncode == 65, stderr(s)
    assert "lzop stream is corrupt" in err
    assert os.listdir(dest_dir) == []  # neither %p nor a temporary file


def test_existing_segment_with_different_content_is_not_overwritten(wale, archive, scratch):
    prefix, adir = archive
    src = os.path.join(scratch, SEG)
    make_segment(src)
    assert wale("wal-push", src, prefix=prefix, user=None).returncode == 0
    obj = os.path.join(adir, "wal_005", SEG + ".lzo")
    before = open(obj, "rb").read()

    # Same bytes again: success, nothing rewritten.
    p = wale("wal-push", src, prefix=prefix, user=None)
    assert p.returncode == 0
    assert "already archived with identical content" in stderr(p)

    make_segment(src)  # new random payload, same header
    p = wale("wal-push", src, prefix=prefix, user=None)
    assert p.returncode == 3
    assert "refusing to overwrite archived WAL file" in stderr(p)
    # Both digests are named: the local file's (XXH3-128, as new objects carry) and the archived one's.
    assert "xxh3-128 " + xxhash.xxh3_128(open(src, "rb").read()).hexdigest() in stderr(p)
    assert stderr(p).count("xxh3-128 ") == 2
    assert open(obj, "rb").read() == before
    # Pushing with another codec does not sneak a second copy in either.
    p = wale("wal-push", src, prefix=prefix, user=None, env={"WALE_COMPRESSION": "zstd"})
    assert p.returncode == 3
    assert not os.path.exists(os.path.join(adir, "wal_005", SEG + ".zst"))
    assert sorted(os.listdir(os.path.join(adir, "wal_005"))) == [SEG + ".lzo"]


def test_partial_segment_is_archived_and_fetched(wale, archive, scratch):
    prefix, adir = archive
    name = "000000010000000000000005"
    src = os.path.join(scratch, name + ".partial")
    make_segment(src, name=name)
    p = wale("wal-push", src, prefix=prefix, user=None)
    assert p.returncode == 0, stderr(p)
    assert os.listdir(os.path.join(adir, "wal_005")) == [name + ".partial.lzo"]
    dest = os.path.join(scratch, "out")
    assert wale("wal-fetch", "-p", "0", name + ".partial", dest, prefix=prefix, user=None).returncode == 0
    assert open(dest, "rb").read() == open(src, "rb").read()
    # Never returned in place of the full segment.
    assert wale("wal-fetch", "-p", "0", name, dest + "2", prefix=prefix, user=None).returncode == 1
    # A .partial with a bad header is refused like a segment.
    with open(src, "r+b") as f:
        f.write(b"\0" * 40)
    os.unlink(os.path.join(adir, "wal_005", name + ".partial.lzo"))
    assert wale("wal-push", src, prefix=prefix, user=None).returncode == 4
