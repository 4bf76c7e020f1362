"""check against real misconfigurations on real servers: each named with its fix; a healthy
setup passes, --switch-wal included."""
import json
import os
import time

from harness import s3_env
from test_wal_archiving import archiving_cluster


def checks(p):
    """{check name: (status, detail + fix)} from check --json."""
    return {r["check"]: (r["status"], r["detail"] + " " + (r["fix"] or "")) for r in json.loads(p.stdout)}


def test_check_store_misconfigurations(wale, s3_prefix):
    e = s3_env()
    p = wale("check", "--no-postgres", "--json", prefix=s3_prefix)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    c = checks(p)
    assert [c[k][0] for k in ("store listing", "store write", "store read", "clock", "store delete")] == ["ok"] * 5, c
    # The probe is gone afterwards.
    assert wale("backup-list", prefix=s3_prefix).returncode == 0

    p = wale("check", "--no-postgres", prefix=s3_prefix, env={"AWS_SECRET_ACCESS_KEY": "wrong" + e["AWS_SECRET_ACCESS_KEY"][5:]})
    out = p.stdout.decode()
    assert p.returncode == 1 and out.startswith("error\tstore listing\t") and "fix:" in out, out + p.stderr.decode()
    assert "wrong" not in out and e["AWS_SECRET_ACCESS_KEY"] not in out

    bucket = s3_prefix.split("/")[2]
    p = wale("check", "--no-postgres", prefix=s3_prefix.replace(bucket, bucket + "-missing"))
    out = p.stdout.decode()
    assert p.returncode == 1 and "error\tstore listing" in out and "bucket" in out.lower(), out

    # Read-only credentials: listing works, the write is refused and named.
    ro = {"AWS_ACCESS_KEY_ID": os.environ["WALE_TEST_S3_RO_ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY": os.environ["WALE_TEST_S3_RO_SECRET_KEY"]}
    p = wale("check", "--no-postgres", "--json", prefix=s3_prefix, env=ro)
    c = checks(p)
    assert p.returncode == 1 and c["store listing"][0] == "ok" and c["store write"][0] == "error", c


def test_check_postgres_misconfigurations(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    env = c.env()

    # Healthy, a forced switch included.
    p = wale("check", "--switch-wal", "--archive-timeout", "60", "--json", prefix=prefix, env=env)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    r = checks(p)
    for k in ("wal_level", "archive_mode", "archive_command", "archiver", "archived segment", "switch-wal"):
        assert r[k][0] == "ok", (k, r)
    p = wale("check", prefix=prefix, env=env)
    assert p.returncode == 0 and all(l.startswith("ok\t") for l in p.stdout.decode().splitlines()), p.stdout.decode()

    # archive_command pointing at another prefix.
    other = prefix + "-other"
    c.psql("ALTER SYSTEM SET archive_command = '" + wale.command_line(other, "wal-push %p").replace("'", "''") + "'")
    c.psql("SELECT pg_reload_conf()")
    time.sleep(1)
    p = wale("check", "--json", prefix=prefix, env=env)
    r = checks(p)
    assert p.returncode == 1 and r["archive_command"][0] == "error" and "another prefix" in r["archive_command"][1], r

    # A failing archiver ("stopped": nothing arrives), and a switch that never reaches the archive.
    c.psql("ALTER SYSTEM SET archive_command = '/bin/false'")
    c.psql("SELECT pg_reload_conf()")
    time.sleep(1)
    c.psql("CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1)")
    c.psql("SELECT pg_switch_wal()")
    c.wait_until("SELECT failed_count > 0 FROM pg_stat_archiver", "t")
    p = wale("check", "--switch-wal", "--archive-timeout", "3", "--json", prefix=prefix, env=env)
    r = checks(p)
    assert p.returncode == 1 and r["archiver"][0] == "error" and "failing" in r["archiver"][1], r
    assert r["switch-wal"][0] == "error" and "did not reach" in r["switch-wal"][1], r
    assert r["archive_command"][0] == "error" and "does not run wal-e wal-push" in r["archive_command"][1], r

    # archive_mode = off and wal_level = minimal (restart).
    c.psql("ALTER SYSTEM SET archive_mode = off")
    c.psql("ALTER SYSTEM SET wal_level = minimal")
    c.psql("ALTER SYSTEM SET max_wal_senders = 0")
    c.stop()
    c.start()
    p = wale("check", "--json", prefix=prefix, env=env)
    r = checks(p)
    assert p.returncode == 1 and r["wal_level"][0] == "error" and "wal_level = replica" in r["wal_level"][1], r
    assert r["archive_mode"][0] == "error" and "archive_mode = on" in r["archive_mode"][1], r
    c.stop()

    # PostgreSQL not reachable: a warning (the store checks still count), an error with --switch-wal.
    p = wale("check", prefix=prefix, env=env)
    assert p.returncode == 0 and "warning\tpostgresql" in p.stdout.decode(), p.stdout.decode()
    p = wale("check", "--switch-wal", prefix=prefix, env=env)
    assert p.returncode == 1 and "error\tpostgresql" in p.stdout.decode(), p.stdout.decode()


def test_a_store_refusing_server_side_encryption_names_the_fix(wale, s3_prefix, scratch):
    """An S3-compatible server without a key service answers WAL-E's default AES256 header with 500
    (SeaweedFS, MinIO): wal-push and check both say to set WALE_S3_SSE=none, and that works."""
    from test_s3 import segment_file, start_proxy
    src = segment_file(scratch)
    proxy, port = start_proxy("sse-500")
    try:
        env = {"WALE_S3_ENDPOINT": f"http+path://127.0.0.1:{port}", "WALE_RETRIES": "2"}
        p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
        assert p.returncode == 74 and "WALE_S3_SSE=none" in p.stderr.decode(), p.stderr.decode()
        p = wale("check", "--no-postgres", "--json", prefix=s3_prefix, env=env, user=None)
        c = checks(p)
        assert p.returncode == 1 and c["store write"][0] == "error" and "WALE_S3_SSE=none" in c["store write"][1], c
        env["WALE_S3_SSE"] = "none"
        assert wale("check", "--no-postgres", prefix=s3_prefix, env=env, user=None).returncode == 0
        p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
        assert p.returncode == 0, p.stderr.decode()
    finally:
        proxy.kill()
