"""wal-fetch's contract with PostgreSQL: exit 1 only when the file is not in the archive. Every
other failure stops archive recovery with FATAL (status above 125) instead of letting it end
early and promote; after the cause is fixed and the server is started again, recovery completes
to its target. On a standby a storage outage is not fatal: it waits, then catches up."""
import os
import time

import pytest

from harness import Cluster, chown_pg, run
from test_backups import backup_push, restore_config
from test_wal_archiving import archiving_cluster


def fetch_script(wale, scratch, prefix, name="fetch.sh"):
    """restore_command = a script that reads wal-e's environment from a file the test rewrites,
    as an envdir would."""
    envfile = os.path.join(scratch, name + ".env")
    script = os.path.join(scratch, name)
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\nset -a\n. {envfile}\nexec {wale.path} wal-fetch \"$@\"\n")
    os.chmod(script, 0o755)

    def set_env(**overrides):
        env = {**wale.env_prefix(prefix), "WALE_RETRIES": "2", **overrides}
        with open(envfile, "w") as f:
            for k, v in sorted(env.items()):
                f.write(f"{k}='{v}'\n")
        chown_pg(envfile)
    set_env()
    return script, set_env


def primary_with_backup(make_cluster, wale, prefix, version):
    c = archiving_cluster(make_cluster, wale, prefix, version)
    c.pgbench("-i", "-s", "2", "-q")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    c.pgbench("-c", "2", "-T", "2", "-n")
    return c, name


def start_fails(r):
    p = run([r.bin("pg_ctl"), "-D", r.data, "-l", r.log, "-w", "-t", "120", "start"], user="postgres", check=False)
    assert p.returncode != 0, "the server must not come up"
    deadline = time.time() + 60
    while os.path.exists(os.path.join(r.data, "postmaster.pid")) and time.time() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(os.path.join(r.data, "postmaster.pid")), "the server must stop"


@pytest.mark.parametrize("version", [15, 18], ids=lambda v: f"pg{v}")
def test_archive_recovery_stops_on_errors_and_resumes_after_the_fix(make_cluster, wale, s3_prefix, scratch, version):
    c, name = primary_with_backup(make_cluster, wale, s3_prefix, version)
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('contract_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1 AS x")
    c.wait_archived()

    target = os.path.join(scratch, "restored")
    r = make_cluster(version, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "contract_target", "--recovery-target-action", "promote",
             target, name, prefix=s3_prefix)
    assert f.returncode == 0, f.stderr.decode()
    restore_config(c, target, r.port)
    script, set_env = fetch_script(wale, scratch, s3_prefix)
    with open(os.path.join(target, "postgresql.auto.conf"), "a") as conf:
        conf.write(f"restore_command = '{script} \"%f\" \"%p\"'\n")

    # Each of these made wal-fetch exit 1 before: PostgreSQL would have ended recovery at the
    # backup's end and promoted, without the work after it.
    causes = [
        ({"AWS_SECRET_ACCESS_KEY": "wrong-secret"}, 129, "signature"),
        ({"AWS_ACCESS_KEY_ID": "AKIDUNKNOWN", "AWS_SECRET_ACCESS_KEY": "x"}, 129, "AWS_ACCESS_KEY_ID"),
        ({"WALE_S3_PREFIX": "s3://no-such-bucket-contract/pg", "WALE_FILE_PREFIX": ""}, 129, "does not exist"),
        ({"WALE_S3_ENDPOINT": "http+path://127.0.0.1:9"}, 202, "S3 request failed"),
    ]
    for env, status, words in causes:
        set_env(**env)
        before = os.path.getsize(r.log) if os.path.exists(r.log) else 0
        start_fails(r)
        log = open(r.log, errors="replace").read()[before:]
        assert f"exit code {status}" in log, log[-3000:]
        assert "FATAL" in log and words in log, log[-3000:]
        assert "so that PostgreSQL stops recovery instead of ending it here" in log
        assert "wrong-secret" not in log
        # Not promoted: still in recovery, no new timeline.
        assert os.path.exists(os.path.join(target, "recovery.signal"))
        assert not any(n.endswith(".history") for n in os.listdir(os.path.join(target, "pg_wal")))

    set_env()
    r.start()
    r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    assert r.table_checksums() == expected
    assert r.psql("SELECT to_regclass('after_target') IS NULL") == "t"
    assert 'recovery stopping at restore point "contract_target"' in open(r.log, errors="replace").read()


def test_standby_waits_out_a_storage_outage_and_stops_on_bad_credentials(make_cluster, wale, s3_prefix, scratch):
    c, name = primary_with_backup(make_cluster, wale, s3_prefix, 18)
    c.wait_archived()
    target = os.path.join(scratch, "standby")
    s = make_cluster(18, "standby")
    f = wale("backup-fetch", target, name, prefix=s3_prefix)
    assert f.returncode == 0, f.stderr.decode()
    restore_config(c, target, s.port)
    script, set_env = fetch_script(wale, scratch, s3_prefix)
    with open(os.path.join(target, "postgresql.auto.conf"), "a") as conf:
        conf.write(f"restore_command = '{script} \"%f\" \"%p\"'\nwal_retrieve_retry_interval = '500ms'\n")
    open(os.path.join(target, "standby.signal"), "w").close()
    chown_pg(os.path.join(target, "standby.signal"))
    s.start()
    c.psql("CREATE TABLE marker (x int)")
    c.wait_archived()
    s.wait_until("SELECT to_regclass('marker') IS NOT NULL", "t", timeout=120)

    # The store goes away: wal-fetch exits 74 (not fatal), the standby keeps running and waiting.
    set_env(WALE_S3_ENDPOINT="http+path://127.0.0.1:9")
    c.psql("INSERT INTO marker VALUES (1)")
    c.wait_archived()
    deadline = time.time() + 90
    while time.time() < deadline and "exiting 74 so that PostgreSQL retries later" not in open(s.log, errors="replace").read():
        time.sleep(0.5)
    assert "exiting 74 so that PostgreSQL retries later" in open(s.log, errors="replace").read(), s.tail_log()
    time.sleep(3)  # and PostgreSQL retries instead of stopping
    assert s.psql("SELECT pg_is_in_recovery()") == "t"
    assert s.psql("SELECT count(*) FROM marker") == "0"
    assert "FATAL" not in open(s.log, errors="replace").read()
    # Back: it catches up.
    set_env()
    s.wait_until("SELECT count(*) FROM marker", "1", timeout=120)

    # A credential error is fatal on a standby too: it stops instead of silently falling behind.
    set_env(AWS_SECRET_ACCESS_KEY="wrong-secret")
    c.psql("INSERT INTO marker VALUES (2)")
    c.wait_archived()
    deadline = time.time() + 60
    while os.path.exists(os.path.join(target, "postmaster.pid")) and time.time() < deadline:
        time.sleep(0.5)
    assert not os.path.exists(os.path.join(target, "postmaster.pid")), "the standby must stop"
    log = open(s.log, errors="replace").read()
    assert "exit code 129" in log and "FATAL" in log, log[-3000:]


def test_wal_fetch_status_for_every_cause(wale, s3_prefix, scratch):
    """No server: each configuration, credential and storage cause, in both modes."""
    standby_dir = os.path.join(scratch, "standbydir")
    os.makedirs(standby_dir)
    open(os.path.join(standby_dir, "standby.signal"), "w").close()
    dest = os.path.join(scratch, "out")
    seg = "000000010000000000000001"
    cases = [
        ("wrong secret", {"AWS_SECRET_ACCESS_KEY": "wrong-secret"}, s3_prefix, 129, 129),
        ("unknown key id", {"AWS_ACCESS_KEY_ID": "AKIDUNKNOWN"}, s3_prefix, 129, 129),
        ("missing bucket", {}, "s3://no-such-bucket-contract/pg", 129, 129),
        ("no prefix", {"WALE_FILE_PREFIX": ""}, None, 129, 129),
        ("unknown scheme", {}, "ftp://x/y", 129, 129),
        ("malformed endpoint", {"WALE_S3_ENDPOINT": "http+path://u@host/x"}, s3_prefix, 129, 129),
        ("no region", {"WALE_S3_ENDPOINT": "", "AWS_REGION": "", "AWS_CONFIG_FILE": "/nonexistent"}, s3_prefix, 129, 129),
        ("malformed region", {"AWS_REGION": "us east\n1"}, s3_prefix, 129, 129),
        ("store down", {"WALE_S3_ENDPOINT": "http+path://127.0.0.1:9", "WALE_RETRIES": "2"}, s3_prefix, 202, 74),
    ]
    for what, env, prefix, recovery_status, standby_status in cases:
        for cwd, status in ((scratch, recovery_status), (standby_dir, standby_status)):
            p = wale("wal-fetch", "-p", "0", seg, dest, prefix=prefix, env=env, user=None, cwd=cwd, timeout=120)
            err = p.stderr.decode()
            assert p.returncode == status, (what, cwd, p.returncode, err)
            assert "wrong-secret" not in err and "Signature=" not in err and "Authorization" not in err, (what, err)
            assert "Traceback" not in err
            assert not os.path.exists(dest)
    # The explicit option wins over the data directory's files.
    p = wale("wal-fetch", "--recovery-mode", "archive-recovery", "-p", "0", seg, dest, prefix=s3_prefix,
             env={"WALE_S3_ENDPOINT": "http+path://127.0.0.1:9", "WALE_RETRIES": "1"}, user=None, cwd=standby_dir)
    assert p.returncode == 202, p.stderr.decode()
    p = wale("wal-fetch", "--recovery-mode", "standby", "-p", "0", seg, dest, prefix=s3_prefix,
             env={"WALE_S3_ENDPOINT": "http+path://127.0.0.1:9", "WALE_RETRIES": "1"}, user=None, cwd=scratch)
    assert p.returncode == 74, p.stderr.decode()
    # A restore_command that does not parse is fatal too; a missing file is still 1.
    assert wale("wal-fetch", "--no-such-option", seg, dest, prefix=s3_prefix, user=None).returncode == 130
    assert wale("wal-fetch", seg, prefix=s3_prefix, user=None).returncode == 130
    missing = wale("wal-fetch", "-p", "0", seg, dest, prefix=s3_prefix, user=None)
    assert missing.returncode == 1, missing.stderr.decode()


def test_sigquit_ends_wal_fetch_at_once_without_a_crash_trace(wale, archive, scratch):
    """PostgreSQL ends restore_command with SIGQUIT on an immediate shutdown: wal-fetch exits at
    once (131) and quietly; Swift's runtime used to print a backtrace into the server log and take
    seconds over it, holding up the shutdown and the restart after it."""
    import signal
    import subprocess
    prefix, adir = archive
    os.makedirs(os.path.join(adir, "wal_005"))
    name = "000000010000000000000042"
    os.mkfifo(os.path.join(adir, "wal_005", name + ".lzo"))  # a read that never returns
    env = {**os.environ, "WALE_FILE_PREFIX": prefix, "WALE_LOG_DESTINATION": "stderr"}
    for sig, code in ((signal.SIGQUIT, 131),):
        p = subprocess.Popen([wale.path, "wal-fetch", "-p", "0", name, os.path.join(scratch, "out")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        assert p.poll() is None
        started = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        assert time.monotonic() - started < 1.0, time.monotonic() - started
        assert p.returncode == code, (p.returncode, err.decode())
        assert b"crashed" not in err and b"Backtrac" not in err, err.decode()
        assert not os.path.exists(os.path.join(scratch, "out"))


def test_partial_file_of_a_killed_fetch_is_removed_by_the_next(wale, archive, scratch):
    """A wal-fetch ended mid-download (SIGQUIT: PostgreSQL's immediate shutdown; or kill -9)
    leaves its partial temporary file in pg_wal; the next wal-fetch to that name removes it (its
    process is gone), and leaves a live writer's alone."""
    import signal
    import subprocess
    import threading
    from test_bad_input import make_segment
    prefix, adir = archive
    seg = "000000010000000000000003"
    src = os.path.join(scratch, seg)
    make_segment(src, name=seg)
    assert wale("wal-push", src, prefix=prefix, user=None).returncode == 0
    body = open(os.path.join(adir, "wal_005", seg + ".lzo"), "rb").read()
    stalled = "000000010000000000000004"
    fifo = os.path.join(adir, "wal_005", stalled + ".lzo")
    os.mkfifo(fifo)
    release = threading.Event()

    def feed():  # half an object, then nothing until released
        with open(fifo, "wb") as f:
            f.write(body[:len(body) // 2])
            f.flush()
            release.wait(60)

    t = threading.Thread(target=feed)
    t.start()
    pg_wal = os.path.join(scratch, "pg_wal")
    os.makedirs(pg_wal)
    live = os.path.join(pg_wal, f".wal-e-tmp.RECOVERYXLOG.{os.getpid()}.live")  # a writer still running
    open(live, "wb").close()
    dest = os.path.join(pg_wal, "RECOVERYXLOG")
    env = {**os.environ, "WALE_FILE_PREFIX": prefix, "WALE_LOG_DESTINATION": "stderr"}
    p = subprocess.Popen([wale.path, "wal-fetch", "-p", "0", stalled, dest], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        partial = []
        while time.monotonic() < deadline and not partial:
            partial = [n for n in os.listdir(pg_wal) if n.startswith(f".wal-e-tmp.RECOVERYXLOG.{p.pid}.")]
            time.sleep(0.05)
        assert partial, os.listdir(pg_wal)
        time.sleep(0.5)  # into the stalled read
        p.send_signal(signal.SIGQUIT)
        assert p.wait(timeout=30) == 131
    finally:
        release.set()
        t.join()
    assert os.path.exists(os.path.join(pg_wal, partial[0]))  # what the killed fetch left

    f = wale("wal-fetch", "-p", "0", seg, dest, prefix=prefix, user=None)
    assert f.returncode == 0, f.stderr.decode()
    assert open(dest, "rb").read() == open(src, "rb").read()
    assert sorted(os.listdir(pg_wal)) == sorted(["RECOVERYXLOG", os.path.basename(live)]), os.listdir(pg_wal)
