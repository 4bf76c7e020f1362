"""Every command ends in bounded time, with the right status, when the store resets, stalls or
trickles through the fault proxy, on S3 and on Azure; a reset in the middle of a download is
resumed from the last good byte (a ranged GET), so wal-fetch and backup-fetch succeed."""
import os
import subprocess
import sys
import time
import urllib.parse

import pytest

from harness import chown_pg, sha256_file
from test_backups import backup_push
from test_wal_archiving import archiving_cluster

# The tests that time a fault share one pytest-xdist worker, so they never compete with each other.
pytestmark = pytest.mark.xdist_group("fault-timing")

# Tight limits so the bounds are short: 2 attempts, 4 s per small request, 3 s stall window.
LIMITS = {"WALE_RETRIES": "2", "WALE_S3_REQUEST_TIMEOUT": "4", "WALE_WABS_REQUEST_TIMEOUT": "4", "WALE_STALL_TIMEOUT": "3"}
# What the limits allow, with room for process start-up and backoff (stated in docs/design.md).
BOUND = 40
# Where the point is that a fault is survived (not how fast a command gives up), the limits leave
# room for a loaded machine: a resumed download must not be failed by the stall rule instead.
PATIENT = {"WALE_RETRIES": "3", "WALE_S3_REQUEST_TIMEOUT": "30", "WALE_WABS_REQUEST_TIMEOUT": "30", "WALE_STALL_TIMEOUT": "30"}


def proxy(store, mode, count):
    if store == "s3":
        port = os.environ["WALE_TEST_S3_ENDPOINT"].rsplit(":", 1)[1]
    else:
        port = urllib.parse.urlsplit(os.environ["WALE_TEST_WABS_ENDPOINT"]).port
    p = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "faultproxy.py"), mode, str(count), str(port)],
                         stdout=subprocess.PIPE)
    return p, int(p.stdout.readline())


def through(store, port):
    if store == "s3":
        return {"WALE_S3_ENDPOINT": f"http+path://127.0.0.1:{port}"}
    path = urllib.parse.urlsplit(os.environ["WALE_TEST_WABS_ENDPOINT"]).path
    return {"WABS_ENDPOINT": f"http://127.0.0.1:{port}{path}"}


@pytest.fixture(params=["s3", "wabs"])
def stored(request, make_cluster, wale, scratch):
    """A PostgreSQL 15 cluster archiving to the store, with one backup and its WAL."""
    prefix = request.getfixturevalue("s3_prefix" if request.param == "s3" else "wabs_prefix")
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "3", "-q")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    seg = c.wait_archived()
    return request.param, prefix, c, name, seg


def timed(wale, *args, prefix, env):
    t0 = time.time()
    p = wale(*args, prefix=prefix, env={**LIMITS, **env}, user=None, timeout=300)
    return p, time.time() - t0


def test_every_command_is_bounded_and_downloads_resume(stored, wale, scratch):
    store, prefix, c, name, seg = stored
    out = os.path.join(scratch, "out")
    os.makedirs(out)
    chown_pg(out)

    # A reset half-way through the body of the first two downloads: resumed, the result whole.
    p, port = proxy(store, "reset-body", 2)
    try:
        dest = os.path.join(out, seg)
        f, _ = timed(wale, "wal-fetch", "-p", "0", seg, dest, prefix=prefix, env={**through(store, port), **PATIENT})
        assert f.returncode == 0, f.stderr.decode()
        assert "resuming GET" in f.stderr.decode(), f.stderr.decode()
        assert sha256_file(dest) == sha256_file(os.path.join(c.data, "pg_wal", seg))
    finally:
        p.kill()
    p, port = proxy(store, "reset-body", 2)
    try:
        target = os.path.join(scratch, "restored")
        f, _ = timed(wale, "backup-fetch", target, name, prefix=prefix, env={**through(store, port), **PATIENT})
        assert f.returncode == 0, f.stderr.decode()
        assert "resuming GET" in f.stderr.decode() or "retrying" in f.stderr.decode(), f.stderr.decode()
        assert "every file matched the backup manifest" in f.stderr.decode()
    finally:
        p.kill()

    # Trickle (a byte every 2 s), a head and then nothing, on every response: each command ends
    # within the bound with the status its contract gives (wal-fetch: fatal for PostgreSQL).
    for mode in ("trickle", "stall-body"):
        p, port = proxy(store, mode, 0)
        try:
            env = through(store, port)
            dest = os.path.join(out, "never-" + mode)
            runs = [
                (("wal-fetch", "-p", "0", seg, dest), 202),
                (("backup-fetch", os.path.join(scratch, "r-" + mode), name), 74),
                (("backup-list", "--detail"), 74),
                (("backup-push", "--fast", c.data), 74),
                (("wal-push", os.path.join(c.data, "pg_wal", seg)), 74),
                (("delete", "retain", "5"), 74),
            ]
            for args, status in runs:
                r, elapsed = timed(wale, *args, prefix=prefix, env={**env, **(c.env() if args[0] == "backup-push" else {})})
                err = r.stderr.decode()
                assert r.returncode == status, (mode, args[0], r.returncode, err)
                assert elapsed < BOUND, (mode, args[0], elapsed)
                assert "Traceback" not in err and "Authorization" not in err
            assert not os.path.exists(dest)
        finally:
            p.kill()



@pytest.mark.parametrize("store", ["s3", "wabs"])
def test_resets_mid_upload_are_retried_and_nothing_half_written_is_visible(request, store, make_cluster, wale, scratch):
    """A connection reset half-way through an upload's body (a whole object: S3 PUT / Azure Put
    Blob; a part: UploadPart / Put Block): the request is retried on its own and what becomes
    visible is whole. When every upload is reset: bounded time, exit 74, nothing visible."""
    from test_abandoned_uploads import random_segment, stopped_cluster
    prefix = request.getfixturevalue("s3_prefix" if store == "s3" else "wabs_prefix")
    seg = os.path.join(scratch, "000000010000000000000031")
    random_segment(seg, os.path.basename(seg))
    c = stopped_cluster(make_cluster, mib=24)
    pg = {"PATH": c.bindir + ":" + os.environ["PATH"]}

    p, port = proxy(store, "reset-upload", 2)
    try:
        r, _ = timed(wale, "wal-push", seg, prefix=prefix, env={**through(store, port), **PATIENT})
        assert r.returncode == 0 and "retrying" in r.stderr.decode(), r.stderr.decode()
    finally:
        p.kill()
    back = os.path.join(scratch, "back")
    r = wale("wal-fetch", "-p", "0", os.path.basename(seg), back, prefix=prefix, user=None)
    assert r.returncode == 0 and sha256_file(back) == sha256_file(seg), r.stderr.decode()

    p, port = proxy(store, "reset-upload", 3)
    try:
        r, _ = timed(wale, "backup-push", "--while-offline", c.data, prefix=prefix, env={**through(store, port), **PATIENT, **pg})
        assert r.returncode == 0 and "retrying" in r.stderr.decode(), r.stderr.decode()
    finally:
        p.kill()
    target = os.path.join(scratch, "restored")
    f = wale("backup-fetch", target, "LATEST", prefix=prefix, user=None)
    assert f.returncode == 0 and "every file matched the backup manifest" in f.stderr.decode(), f.stderr.decode()
    assert sha256_file(os.path.join(target, "base", "random.bin")) == sha256_file(os.path.join(c.data, "base", "random.bin"))

    # Every upload reset: each command gives up within the bound, and nothing half-written shows.
    other = prefix + "-reset"
    seg2 = os.path.join(scratch, "000000010000000000000032")
    random_segment(seg2, os.path.basename(seg2))
    p, port = proxy(store, "reset-upload", 1000)
    try:
        for args, env in ((("wal-push", seg2), {}), (("backup-push", "--while-offline", c.data), pg)):
            r, elapsed = timed(wale, *args, prefix=other, env={**through(store, port), **env})
            assert r.returncode == 74, (args[0], r.returncode, r.stderr.decode())
            assert elapsed < BOUND, (args[0], elapsed)
    finally:
        p.kill()
    r = wale("wal-fetch", "-p", "0", os.path.basename(seg2), os.path.join(scratch, "none"), prefix=other, user=None)
    assert r.returncode == 1, r.stderr.decode()
    assert not os.path.exists(os.path.join(scratch, "none"))
    listed = wale("backup-list", prefix=other, user=None)
    assert listed.returncode == 0 and listed.stdout.count(b"\r\n") == 1, listed.stdout


def test_a_hung_file_system_under_file_prefix_is_bounded(wale, archive, scratch):
    """file:// has no request to time out: a read blocked in the kernel (a hung NFS mount) is
    stood in for by a FIFO as the object, with no writer (open blocks), a writer that trickles a
    byte a second, and one that writes a head and stops. Each ends within the stall rule with the
    storage status of the command's contract; %p is never created."""
    import threading
    from test_bad_input import SEG, make_segment
    prefix, adir = archive
    seg = os.path.join(scratch, SEG)
    make_segment(seg)
    assert wale("wal-push", seg, prefix=prefix, user=None).returncode == 0
    obj = os.path.join(adir, "wal_005", SEG + ".lzo")
    real = open(obj, "rb").read()
    os.unlink(obj)
    os.mkfifo(obj)
    quick = {"WALE_STALL_TIMEOUT": "3"}
    out = os.path.join(scratch, "pg_wal")
    os.makedirs(out)

    def feed(how, stop):
        def run_writer():
            try:
                with open(obj, "wb", buffering=0) as f:
                    if how == "whole":
                        f.write(real)
                    elif how == "head":
                        f.write(real[:1000])
                        stop.wait(30)
                    else:  # trickle
                        for b in real[:30]:
                            f.write(bytes([b]))
                            if stop.wait(1):
                                break
            except BrokenPipeError:
                pass  # the reader gave up, as it should
        t = threading.Thread(target=run_writer, daemon=True)
        t.start()
        return t

    for how, mode, status in ((None, "archive-recovery", 202), (None, "standby", 74), ("trickle", "archive-recovery", 202),
                              ("head", "archive-recovery", 202)):
        stop = threading.Event()
        writer = feed(how, stop) if how else None
        dest = os.path.join(out, f"{how}-{mode}")
        t0 = time.time()
        r = wale("wal-fetch", "--recovery-mode", mode, "-p", "0", SEG, dest, prefix=prefix, env=quick, user=None, timeout=120)
        elapsed = time.time() - t0
        assert r.returncode == status, (how, mode, r.returncode, r.stderr.decode())
        assert elapsed < 15, (how, mode, elapsed)
        assert "made no progress" in r.stderr.decode()
        assert not os.path.exists(dest)
        if writer:
            stop.set()
            writer.join(10)
            assert not writer.is_alive()
    # The rule does not fire on a file system that answers: the same FIFO fed promptly restores.
    feed("whole", threading.Event())
    dest = os.path.join(out, "whole")
    r = wale("wal-fetch", "-p", "0", SEG, dest, prefix=prefix, env=quick, user=None)
    assert r.returncode == 0 and sha256_file(dest) == sha256_file(seg), r.stderr.decode()
