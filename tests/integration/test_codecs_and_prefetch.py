"""lzop interoperability with the real lzop binary, zstd/lz4 selection, prefetch, bounded memory."""
import os
import subprocess
import sys
import time

import pytest

from harness import chown_pg, run
from test_bad_input import make_segment

HIST = "0000000A.history"


def payloads():
    text = b"".join(b"%d\t0/%X\tno recovery target specified\n" % (i, i * 4096) for i in range(40000))
    return {
        "empty": b"",
        "text": text,  # compressible, several 256 KiB blocks
        "random": os.urandom(700_000),  # incompressible: lzop stores these blocks raw
        "mixed": os.urandom(300_000) + bytes(600_000) + os.urandom(10),
    }


@pytest.mark.parametrize("kind", ["empty", "text", "random", "mixed"])
def test_lzop_reads_what_we_write(wale, archive, scratch, kind):
    prefix, adir = archive
    data = payloads()[kind]
    src = os.path.join(scratch, HIST)
    open(src, "wb").write(data)
    assert wale("wal-push", src, prefix=prefix, user=None).returncode == 0
    obj = os.path.join(adir, "wal_005", HIST + ".lzo")
    run(["lzop", "-t", obj])  # the lzop tool checks every checksum
    assert run(["lzop", "-dc", obj]).stdout == data
    if kind == "empty":
        assert os.path.getsize(obj) == 42  # header + end-of-stream word, like lzop's own


@pytest.mark.parametrize("flags", [["-c"], ["-c", "-1"], ["-c", "-9"], ["--stdout"], ["-c", "--crc32"]])
@pytest.mark.parametrize("kind", ["empty", "text", "random", "mixed"])
def test_we_read_what_lzop_writes(wale, archive, scratch, kind, flags):
    prefix, adir = archive
    data = payloads()[kind]
    os.makedirs(os.path.join(adir, "wal_005"), exist_ok=True)
    obj = os.path.join(adir, "wal_005", HIST + ".lzo")
    # As WAL-E does: data on lzop's stdin (a pipe for partitions, the file for WAL).
    p = subprocess.run(["lzop", *flags], input=data, capture_output=True, check=True)
    open(obj, "wb").write(p.stdout)
    dest = os.path.join(scratch, "out")
    r = wale("wal-fetch", HIST, dest, prefix=prefix, user=None)
    assert r.returncode == 0, r.stderr.decode()
    assert open(dest, "rb").read() == data


def test_real_segment_through_lzop_file_input(wale, archive, scratch):
    """WAL-E runs `lzop -c < segment`: header carries the file's mode and mtime."""
    prefix, adir = archive
    seg = "000000010000000000000007"
    src = os.path.join(scratch, seg)
    make_segment(src, name=seg)
    os.makedirs(os.path.join(adir, "wal_005"))
    with open(src, "rb") as f:
        out = subprocess.run(["lzop", "-c"], stdin=f, capture_output=True, check=True).stdout
    open(os.path.join(adir, "wal_005", seg + ".lzo"), "wb").write(out)
    dest = os.path.join(scratch, "out")
    assert wale("wal-fetch", "-p", "0", seg, dest, prefix=prefix, user=None).returncode == 0
    assert open(dest, "rb").read() == open(src, "rb").read()


def test_corrupt_header_checksum_and_truncation(wale, archive, scratch):
    prefix, adir = archive
    data = payloads()["text"]
    src = os.path.join(scratch, HIST)
    open(src, "wb").write(data)
    assert wale("wal-push", src, prefix=prefix, user=None).returncode == 0
    obj = os.path.join(adir, "wal_005", HIST + ".lzo")
    good = open(obj, "rb").read()
    dest = os.path.join(scratch, "out")
    for damaged, message in [
        (good[:25] + bytes([good[25] ^ 0xFF]) + good[26:], "header checksum mismatch"),
        (good[: len(good) - 100], "truncated"),
        (good + b"garbage", "trailing data"),
    ]:
        open(obj, "wb").write(damaged)
        r = wale("wal-fetch", HIST, dest, prefix=prefix, user=None, env={"WALE_RETRIES": "1"})
        assert r.returncode == 193, r.stderr.decode()  # 65 + 128: fatal for PostgreSQL's archive recovery
        assert message in r.stderr.decode()
        assert not os.path.exists(dest)


@pytest.mark.parametrize("codec,suffix", [("zstd", ".zst"), ("lz4", ".lz4"), ("lzop", ".lzo")])
def test_codec_choice_and_fetch_finds_any(wale, archive, scratch, codec, suffix):
    prefix, adir = archive
    seg = "000000010000000000000011"
    src = os.path.join(scratch, seg)
    make_segment(src, name=seg)
    assert wale("--compression", codec, "wal-push", src, prefix=prefix, user=None).returncode == 0
    assert os.listdir(os.path.join(adir, "wal_005")) == [seg + suffix]
    if codec == "zstd":
        run(["zstd", "-t", os.path.join(adir, "wal_005", seg + suffix)])
    if codec == "lz4":
        run(["lz4", "-t", os.path.join(adir, "wal_005", seg + suffix)])
    dest = os.path.join(scratch, "out")
    # Fetched with the default (lzop) preference: found under the other suffix.
    r = wale("wal-fetch", "-p", "0", seg, dest, prefix=prefix, user=None)
    assert r.returncode == 0, r.stderr.decode()
    assert open(dest, "rb").read() == open(src, "rb").read()


def test_bad_compression_name(wale, archive, scratch):
    prefix, _ = archive
    r = wale("--compression", "brotli", "wal-push", os.path.join(scratch, "x"), prefix=prefix, user=None)
    assert r.returncode == 1
    assert 'unknown compression "brotli"' in r.stderr.decode()


def push_segments(wale, prefix, scratch, first, count, seg_size=16 << 20):
    names = []
    for i in range(count):
        n = first + i
        name = "00000001" + "%08X" % (n // (0x100000000 // seg_size)) + "%08X" % (n % (0x100000000 // seg_size))
        src = os.path.join(scratch, name)
        make_segment(src, name=name, seg_size=seg_size)
        assert wale("wal-push", src, prefix=prefix, user=None).returncode == 0
        names.append(name)
    return names


def wait_for(pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_prefetch_downloads_ahead_and_promotes(wale, archive, scratch):
    prefix, _ = archive
    names = push_segments(wale, prefix, scratch, 0xFD, 6)  # crosses a log boundary (…FF → next log, 00)
    pg_wal = os.path.join(scratch, "pg_wal")
    os.makedirs(pg_wal)
    chown_pg(pg_wal)
    area = os.path.join(pg_wal, ".wal-e", "prefetch")
    r = wale("wal-fetch", "-p", "3", names[0], os.path.join(pg_wal, "RECOVERYXLOG"), prefix=prefix)
    assert r.returncode == 0, r.stderr.decode()
    assert wait_for(lambda: all(os.path.exists(os.path.join(area, n)) for n in names[1:4])), os.listdir(area)
    assert wait_for(lambda: os.listdir(os.path.join(area, "running")) == [])
    assert not os.path.exists(os.path.join(area, names[4]))  # beyond the window

    r = wale("wal-fetch", "-p", "3", names[1], os.path.join(pg_wal, "RECOVERYXLOG"), prefix=prefix)
    assert r.returncode == 0
    assert "promoted prefetched wal segment" in r.stderr.decode()
    assert open(os.path.join(pg_wal, "RECOVERYXLOG"), "rb").read() == open(os.path.join(scratch, names[1]), "rb").read()
    assert not os.path.exists(os.path.join(area, names[1]))
    # The window moved: names[4] is fetched now.
    assert wait_for(lambda: os.path.exists(os.path.join(area, names[4])))


def test_damaged_prefetched_file_is_never_served(wale, archive, scratch):
    prefix, _ = archive
    names = push_segments(wale, prefix, scratch, 0x20, 3)
    pg_wal = os.path.join(scratch, "pg_wal")
    os.makedirs(pg_wal)
    chown_pg(pg_wal)
    area = os.path.join(pg_wal, ".wal-e", "prefetch")
    assert wale("wal-fetch", "-p", "2", names[0], os.path.join(pg_wal, "RECOVERYXLOG"), prefix=prefix).returncode == 0
    assert wait_for(lambda: os.path.exists(os.path.join(area, names[2])))
    assert wait_for(lambda: os.listdir(os.path.join(area, "running")) == [])
    os.truncate(os.path.join(area, names[1]), 1 << 20)  # damage the prefetched copy
    r = wale("wal-fetch", "-p", "0", names[1], os.path.join(pg_wal, "RECOVERYXLOG"), prefix=prefix)
    assert r.returncode == 0
    err = r.stderr.decode()
    assert "promoted" not in err
    assert "discarding a prefetched file" in err
    assert open(os.path.join(pg_wal, "RECOVERYXLOG"), "rb").read() == open(os.path.join(scratch, names[1]), "rb").read()


def test_prefetch_uses_the_segment_size_of_the_cluster(wale, archive, scratch):
    """1 MiB segments: 4096 per log id, so …0FFF is followed by the next log's …0000."""
    prefix, _ = archive
    seg_size = 1 << 20
    names = push_segments(wale, prefix, scratch, 0xFFE, 4, seg_size=seg_size)
    assert names[2].endswith("0000000100000000")
    pg_wal = os.path.join(scratch, "pg_wal")
    os.makedirs(pg_wal)
    chown_pg(pg_wal)
    area = os.path.join(pg_wal, ".wal-e", "prefetch")
    assert wale("wal-fetch", "-p", "3", names[0], os.path.join(pg_wal, "RECOVERYXLOG"), prefix=prefix).returncode == 0
    assert wait_for(lambda: all(os.path.exists(os.path.join(area, n)) for n in names[1:])), os.listdir(area)


def peak_rss_kib(cmd, env):
    """Peak RSS of a child process (ru_maxrss of a fresh wrapper's only child)."""
    code = ("import resource,subprocess,sys;"
            "r=subprocess.run(sys.argv[1:]);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(r.returncode)")
    p = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, env=env)
    assert p.returncode == 0, p.stderr.decode()
    return int(p.stdout.split()[-1])


def test_large_file_streams_with_bounded_memory(wale, archive, scratch):
    prefix, adir = archive
    src = os.path.join(scratch, HIST)
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(384):  # 384 MiB, half of it incompressible
            f.write(block if i % 2 else bytes(1 << 20))
    env = dict(os.environ, WALE_FILE_PREFIX=prefix, WALE_LOG_DESTINATION="stderr")
    rss_push = peak_rss_kib([wale.path, "wal-push", src], env)
    dest = os.path.join(scratch, "out")
    rss_fetch = peak_rss_kib([wale.path, "wal-fetch", HIST, dest], env)
    assert os.path.getsize(dest) == os.path.getsize(src)
    assert open(dest, "rb").read(1 << 22) == open(src, "rb").read(1 << 22)
    # Memory is a product of chunk sizes, not of the file's size.
    assert rss_push < 48 * 1024, rss_push
    assert rss_fetch < 48 * 1024, rss_fetch
