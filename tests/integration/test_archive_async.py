"""Asynchronous archiving (WALE_ARCHIVE_ASYNC=on): a detached helper archives the .ready backlog
while each archive_command call returns once its own segment is archived."""
import fcntl
import os
import signal
import subprocess
import time

from harness import chown_pg, run
from test_wal_archiving import fetch_and_compare

ASYNC = {"WALE_ARCHIVE_ASYNC": "on"}


def backlog(make_cluster, segments=6):
    """A cluster whose archiver failed while it wrote `segments` or more segments."""
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'/bin/false'", wal_keep_size="'1GB'")
    c.start()
    c.pgbench("-i", "-s", "3", "-q")
    for i in range(segments):
        c.psql(f"CREATE TABLE IF NOT EXISTS t{i} AS SELECT g FROM generate_series(1, 1000) g")
        c.psql("SELECT pg_switch_wal()")
    return c


def ready(c):
    status = os.path.join(c.data, "pg_wal", "archive_status")
    return sorted(n[:-6] for n in os.listdir(status) if n.endswith(".ready"))


def helpers(c):
    """This cluster's helpers (other tests' clusters may have theirs)."""
    p = subprocess.run(["pgrep", "-f", "wal-push-ahead .*" + os.path.join(c.data, "pg_wal")], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split()]


def wait_no_helper(c, timeout=30):
    deadline = time.time() + timeout
    while helpers(c) and time.time() < deadline:
        time.sleep(0.1)
    assert not helpers(c), "the helper did not exit once the backlog was archived"


def hold_claim(c):
    """Takes the claim of the oldest .ready segment as a helper would (an flock on
    pg_wal/.wal-e/ahead/<segment>); returns the segment and the fd holding the claim."""
    seg = ready(c)[0]
    claims = os.path.join(c.data, "pg_wal", ".wal-e", "ahead")
    os.makedirs(claims, exist_ok=True)
    chown_pg(os.path.join(c.data, "pg_wal", ".wal-e"))
    chown_pg(claims)
    fd = os.open(os.path.join(claims, seg), os.O_RDWR | os.O_CREAT, 0o600)
    chown_pg(os.path.join(claims, seg))
    fcntl.flock(fd, fcntl.LOCK_EX)
    return seg, fd


def test_async_archiving_drains_a_backlog_every_segment_counted_and_identical(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = backlog(make_cluster)
    pending = ready(c)
    assert len(pending) >= 6, pending
    c.psql("ALTER SYSTEM SET archive_command = '" + wale.command_line(prefix, "wal-push %p", ASYNC).replace("'", "''") + "'")
    c.psql("SELECT pg_reload_conf()")
    last = c.wait_archived()
    status = os.path.join(c.data, "pg_wal", "archive_status")
    c.wait_until("SELECT last_archived_wal FROM pg_stat_archiver", last)
    done = [n for n in os.listdir(status) if n.endswith(".done")]
    assert int(c.psql("SELECT archived_count FROM pg_stat_archiver")) == len(done)
    stored = os.listdir(os.path.join(adir, "wal_005"))
    for s in pending:
        assert s + ".lzo" in stored, f"{s} was not archived"
    fetch_and_compare(wale, prefix, c, scratch, pending)
    log = open(c.log, errors="replace").read()
    # The helper archived segments ahead: PostgreSQL's calls for them found its markers.
    assert "pushed by the asynchronous helper" in log, log[-3000:]
    wait_no_helper(c)
    # Markers and claims of archived segments are swept by the next call.
    c.psql("CREATE TABLE after AS SELECT 1")
    newest = c.wait_archived()
    wal_e = os.path.join(c.data, "pg_wal", ".wal-e")
    assert not os.listdir(os.path.join(wal_e, "pushed"))
    # only the newest call's own claim is left, for the call after it to sweep
    assert set(os.listdir(os.path.join(wal_e, "ahead"))) <= {newest}, os.listdir(os.path.join(wal_e, "ahead"))


def test_a_call_waits_for_a_claimed_segment_and_archives_it_when_the_claim_dies_unmarked(make_cluster, wale, archive, scratch):
    """A helper that dies mid-push (its claim released, no marker): the waiting call archives the
    segment itself; a held claim makes the call wait rather than push the same segment twice."""
    prefix, adir = archive
    c = backlog(make_cluster, segments=2)
    c.stop()
    seg, fd = hold_claim(c)
    env = {**ASYNC, "WALE_LOG_DESTINATION": "stderr"}
    cmd = wale.command_line(prefix, "wal-push " + os.path.join(c.data, "pg_wal", seg), env)
    p = subprocess.Popen(["su", "postgres", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    assert p.poll() is None, "the call did not wait for the claimed segment"
    assert not os.path.exists(os.path.join(adir, "wal_005", seg + ".lzo"))
    os.close(fd)  # the holder dies without a marker
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    assert b"pushed by the asynchronous helper" not in err
    fetch_and_compare(wale, prefix, c, scratch, [seg])
    wait_no_helper(c)  # the call started one for the other .ready segment


def test_killing_the_helper_loses_nothing(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = backlog(make_cluster, segments=8)
    c.stop()
    pending = ready(c)
    pg_wal = os.path.join(c.data, "pg_wal")
    first = wale("wal-push", os.path.join(pg_wal, pending[0]), prefix=prefix, env=ASYNC)
    assert first.returncode == 0, first.stderr.decode()
    killed = helpers(c)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    # The call returned after its own segment; the helper had the other 9 or more to push.
    assert killed, "no helper was running after the first call"
    # PostgreSQL's calls for the rest, one at a time as its archiver makes them: none waits on a
    # claim of the dead helper (the kernel released its locks).
    for seg in pending[1:]:
        t0 = time.monotonic()
        p = wale("wal-push", os.path.join(pg_wal, seg), prefix=prefix, env=ASYNC)
        assert p.returncode == 0, (seg, p.stderr.decode())
        assert time.monotonic() - t0 < 60, seg
    wait_no_helper(c)
    fetch_and_compare(wale, prefix, c, scratch, pending)


def test_a_bad_async_setting_is_refused_before_anything_is_sent(make_cluster, wale, archive):
    prefix, adir = archive
    c = backlog(make_cluster, segments=1)
    c.stop()
    seg = ready(c)[0]
    p = wale("wal-push", os.path.join(c.data, "pg_wal", seg), prefix=prefix, env={"WALE_ARCHIVE_ASYNC": "sometimes"})
    err = p.stderr.decode()
    assert p.returncode == 1 and "WALE_ARCHIVE_ASYNC=sometimes is neither on nor off" in err, (p.returncode, err)
    assert "Traceback" not in err and not os.path.exists(os.path.join(adir, "wal_005"))


def test_the_helper_encrypts_as_the_call_does(make_cluster, wale, archive, scratch):
    """The helper inherits the call's settings: with only the public key on the host, every
    object it pushes is natively encrypted and restores with the private key alone."""
    from test_encryption import keypair
    prefix, adir = archive
    priv, pub = keypair(wale, scratch, "ops")
    c = backlog(make_cluster, segments=6)
    c.stop()
    pending = ready(c)
    pg_wal = os.path.join(c.data, "pg_wal")
    enc = {**ASYNC, "WALE_ENCRYPTION_PUBLIC_KEYS": pub}
    said = ""
    for seg in pending:
        p = wale("wal-push", os.path.join(pg_wal, seg), prefix=prefix, env=enc)
        assert p.returncode == 0, (seg, p.stderr.decode())
        said += p.stderr.decode()
    wait_no_helper(c)
    assert "archived ahead by an earlier wal-push" in said, said  # the helper pushed some of them
    for seg in pending:
        with open(os.path.join(adir, "wal_005", seg + ".lzo"), "rb") as f:
            assert f.read(8) == b"WALEENC\x01", seg
    out = os.path.join(scratch, "fetched")
    os.makedirs(out)
    chown_pg(out)
    for seg in pending:
        p = wale("wal-fetch", "-p", "0", seg, os.path.join(out, seg), prefix=prefix, env={"WALE_ENCRYPTION_PRIVATE_KEYS": priv})
        assert p.returncode == 0, p.stderr.decode()
        assert open(os.path.join(out, seg), "rb").read() == open(os.path.join(pg_wal, seg), "rb").read(), seg


def test_a_stuck_holder_is_waited_for_at_most_120_seconds(make_cluster, wale, archive, scratch):
    """A helper that holds a segment's claim and never finishes (stopped, hung): PostgreSQL's call
    waits the README's 120 s, says so, and archives the segment itself."""
    prefix, adir = archive
    c = backlog(make_cluster, segments=1)
    c.stop()
    seg, fd = hold_claim(c)  # held for the whole call
    try:
        t0 = time.monotonic()
        p = wale("wal-push", os.path.join(c.data, "pg_wal", seg), prefix=prefix, env=ASYNC, timeout=300)
        took = time.monotonic() - t0
    finally:
        os.close(fd)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert 120 <= took < 200, took
    assert f"the asynchronous helper has held {seg} for 120 s; archiving it here" in err, err
    fetch_and_compare(wale, prefix, c, scratch, [seg])
    wait_no_helper(c)
