"""gs:// (Google Cloud Storage) on fake-gcs-server behind a small OAuth2 server that checks every
token (tests/servers/gcs_auth.py): archive_command, a base backup under load uploaded in resumable
chunks, point-in-time restore with wal-fetch as restore_command on PostgreSQL 15 and 18 (a service
account key on one, an authorized-user file on the other), retention, create-only WAL, a token
revoked mid-run, the metadata server, configuration errors, and resets in the middle of downloads."""
import json
import os
import subprocess
import sys
import time
import urllib.parse

import pytest

from harness import PG, gcs_admin, gcs_env, gcs_request, sha256_file
from test_backups import backup_push, start_recovered
from test_bad_input import SEG, make_segment

HERE = os.path.dirname(os.path.abspath(__file__))
# Chunks of 1 MiB: every base backup partition above 1 MiB is a resumable upload of several chunks.
CHUNKED = {"WALE_GS_CHUNK_MIB": "1"}


def bucket_names(bucket, prefix=""):
    """Every object name in the bucket, straight from fake-gcs-server."""
    names, token = [], ""
    while True:
        q = urllib.parse.urlencode({"prefix": prefix, "pageToken": token} if token else {"prefix": prefix})
        status, body = gcs_request("GET", f"/storage/v1/b/{bucket}/o?{q}")
        assert status == 200, (status, body)
        page = json.loads(body)
        names += [o["name"] for o in page.get("items", [])]
        token = page.get("nextPageToken")
        if not token:
            return names


def object_bytes(bucket, name):
    status, body = gcs_request("GET", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media")
    assert status == 200, (status, name)
    return body


@pytest.mark.parametrize("pg_version,kind", [(18, "service_account"), (15, "authorized_user")], ids=["pg18-sa", "pg15-user"])
def test_archive_backup_and_point_in_time_restore_on_gcs(make_cluster, wale, gcs_prefix, scratch, pg_version, kind):
    bucket = gcs_prefix.split("/")[2]
    creds = gcs_env(kind)
    issued = gcs_admin("/_stats")["issued"]
    c = make_cluster(pg_version)
    c.initdb(archive_mode="on", archive_command="'" + wale.command_line(gcs_prefix, "wal-push %p", creds) + "'",
             wal_keep_size="'4GB'", max_wal_size="'4GB'", checkpoint_timeout="'30min'")
    c.start()
    c.pgbench("-i", "-s", "4", "-q")
    load = subprocess.Popen(
        [c.bin("pgbench"), "-c", "2", "-T", "6", "-n", "postgres"], env={**os.environ, **c.env()},
        preexec_fn=lambda: (os.setgid(PG.pw_gid), os.setuid(PG.pw_uid)) and None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    name = backup_push(wale, c, gcs_prefix, "--fast", env={**creds, **CHUNKED}).stdout.decode().strip()
    assert load.wait() == 0
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('gcs_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1")
    seg = c.wait_archived()
    # Every request went through the token-checking proxy with tokens it issued.
    assert gcs_admin("/_stats")["issued"] > issued

    # WAL-E's names: a leading "/" (so WAL-E 1.1 finds them).
    names = bucket_names(bucket)
    assert f"/pg/wal_005/{seg}.lzo" in names, names[:5]
    parts = [n for n in names if n.startswith(f"/pg/basebackups_005/{name}/tar_partitions/")]
    assert parts, names[:10]
    # The largest partition went up in 1 MiB chunks (the restore below proves it whole).
    status, body = gcs_request("GET", f"/storage/v1/b/{bucket}/o?prefix=/pg/basebackups_005/{name}/tar_partitions/")
    items = json.loads(body)["items"]
    big = max(items, key=lambda o: int(o["size"]))
    assert int(big["size"]) > 1 << 20, "no partition above one chunk: the resumable path was not used"

    out = os.path.join(scratch, "fetched")
    p = wale("wal-fetch", "-p", "0", seg, out, prefix=gcs_prefix, env=creds)
    assert p.returncode == 0, p.stderr.decode()
    assert sha256_file(out) == sha256_file(os.path.join(c.data, "pg_wal", seg))
    p = wale("wal-push", os.path.join(c.data, "pg_wal", seg), prefix=gcs_prefix, env=creds)
    assert p.returncode == 0 and "already archived with identical content" in p.stderr.decode(), p.stderr.decode()
    assert wale("wal-fetch", "-p", "0", "0000000100000000000000EE", os.path.join(scratch, "x"), prefix=gcs_prefix, env=creds).returncode == 1

    target = os.path.join(scratch, "restored")
    r = make_cluster(pg_version, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "gcs_target", "--recovery-target-action", "promote",
             "--restore-command", wale.command_line(gcs_prefix, 'wal-fetch "%f" "%p"', creds), target, "LATEST",
             prefix=gcs_prefix, env=creds)
    assert f.returncode == 0, f.stderr.decode()
    assert "every file matched the backup manifest" in f.stderr.decode()
    start_recovered(c, r, target, expected)

    # Retention: a second backup, then retain 1 deletes the first and the WAL before the second.
    second = backup_push(wale, c, gcs_prefix, "--fast", env=creds).stdout.decode().strip()
    p = wale("delete", "--confirm", "retain", "1", prefix=gcs_prefix, env=creds)
    assert p.returncode == 0, p.stderr.decode()
    listed = [l.split("\t")[0] for l in wale("backup-list", prefix=gcs_prefix, env=creds).stdout.decode().split("\r\n")[1:-1]]
    assert listed == [second]
    assert not [n for n in bucket_names(bucket) if f"/{name}" in n], "objects of the deleted backup remain"
    assert wale("wal-fetch", "-p", "0", seg, os.path.join(scratch, "gone"), prefix=gcs_prefix, env=creds).returncode == 1


def test_gcs_wal_is_create_only_and_tokens_renew(wale, gcs_prefix, scratch):
    bucket = gcs_prefix.split("/")[2]
    path = os.path.join(scratch, SEG)
    make_segment(path)
    assert wale("wal-push", path, prefix=gcs_prefix, user=None).returncode == 0
    before = object_bytes(bucket, f"/pg/wal_005/{SEG}.lzo")
    # The same bytes again: success without a new upload; different bytes: refused, nothing replaced.
    p = wale("wal-push", path, prefix=gcs_prefix, user=None)
    assert p.returncode == 0 and "already archived with identical content" in p.stderr.decode(), p.stderr.decode()
    with open(path, "r+b") as f:
        f.seek(8192 + 100)
        f.write(b"different")
    p = wale("wal-push", path, prefix=gcs_prefix, user=None)
    assert p.returncode != 0 and "different" in p.stderr.decode(), (p.returncode, p.stderr.decode())
    assert object_bytes(bucket, f"/pg/wal_005/{SEG}.lzo") == before

    # Every token revoked in the middle of a run (a token revoked or expired early, as GCS may do):
    # GCS answers 401, wal-e gets one new token and carries on. The OAuth server revokes every
    # token once it has let one request through, so the second request of this wal-push (after
    # the existence check) is refused with the first token.
    fresh = SEG[:-1] + "7"
    p2 = os.path.join(scratch, fresh)
    make_segment(p2, fresh)
    # Counted on this test's bucket: tests on the other worker share the server.
    used = gcs_admin(f"/_stats?bucket={bucket}")["tokens_used"]
    gcs_admin(f"/_admin/revoke?after=1&bucket={bucket}", "POST")
    p = wale("wal-push", p2, prefix=gcs_prefix, user=None)
    err = p.stderr.decode()
    assert p.returncode == 0 and "GCS refused the access token" in err, err
    assert gcs_admin(f"/_stats?bucket={bucket}")["tokens_used"] == used + 2  # the revoked one and exactly one new
    p = wale("wal-fetch", "-p", "0", fresh, os.path.join(scratch, "back7"), prefix=gcs_prefix, user=None)
    assert p.returncode == 0 and sha256_file(os.path.join(scratch, "back7")) == sha256_file(p2), p.stderr.decode()


def test_gcs_metadata_server_and_emulator_credentials(wale, gcs_prefix, scratch):
    path = os.path.join(scratch, SEG)
    make_segment(path)
    # No credentials file: the instance's service account, from the metadata server.
    issued = gcs_admin("/_stats")["issued"]
    p = wale("wal-push", path, prefix=gcs_prefix, env=gcs_env("metadata"), user=None)
    assert p.returncode == 0, p.stderr.decode()
    assert gcs_admin("/_stats")["issued"] > issued
    # STORAGE_EMULATOR_HOST (the SDKs' variable) and no credentials: anonymous, straight to the emulator.
    p = wale("wal-fetch", "-p", "0", SEG, os.path.join(scratch, "back"), prefix=gcs_prefix, env=gcs_env("emulator"), user=None)
    assert p.returncode == 0 and sha256_file(os.path.join(scratch, "back")) == sha256_file(path), p.stderr.decode()


def test_gcs_configuration_errors(wale, gcs_prefix, scratch):
    """Each bad credential or prefix: wal-push exits 1 naming what is wrong (never a key), and
    wal-fetch exits above 125 so PostgreSQL stops recovery instead of ending it."""
    path = os.path.join(scratch, SEG)
    make_segment(path)
    sa = json.load(open(os.environ["WALE_TEST_GCS_SERVICE_ACCOUNT"]))
    other_key = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                               capture_output=True, check=True).stdout.decode()

    def keyfile(name, content):
        f = os.path.join(scratch, name)
        with open(f, "w") as out:
            out.write(content if isinstance(content, str) else json.dumps(content))
        os.chmod(f, 0o644)
        return f

    cases = [
        (keyfile("not-json.json", "{ nope"), "is not JSON"),
        (keyfile("no-email.json", {**sa, "client_email": ""}), "has no client_email"),
        (keyfile("bad-pem.json", {**sa, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
         "is not an RSA private key"),
        # A well-formed key that is not the account's: Google's token endpoint refuses the JWT.
        (keyfile("other-key.json", {**sa, "private_key": other_key}), "Invalid JWT Signature"),
        (keyfile("bad-refresh.json", {**json.load(open(os.environ["WALE_TEST_GCS_AUTHORIZED_USER"])), "refresh_token": "wrong"}),
         "refused"),
    ]
    for f, text in cases:
        env = {**gcs_env(), "GOOGLE_APPLICATION_CREDENTIALS": f}
        p = wale("wal-push", path, prefix=gcs_prefix, env=env, user=None)
        err = p.stderr.decode()
        assert p.returncode == 1 and text in err, (f, p.returncode, err)
        assert "PRIVATE KEY" not in err and "Traceback" not in err, err
        p = wale("wal-fetch", SEG, os.path.join(scratch, "no"), prefix=gcs_prefix, env=env, user=None)
        assert p.returncode == 129, (f, p.returncode, p.stderr.decode())
    # A missing bucket: never "not in the archive" (that would end recovery).
    p = wale("wal-fetch", SEG, os.path.join(scratch, "no"), prefix="gs://no-such-bucket/pg", user=None)
    assert p.returncode == 129 and "the bucket no-such-bucket does not exist" in p.stderr.decode(), p.stderr.decode()
    p = wale("wal-push", path, prefix="gs://no-such-bucket/pg", user=None)
    assert p.returncode == 1 and "does not exist" in p.stderr.decode(), p.stderr.decode()
    for bad, text in (({"WALE_GS_CHUNK_MIB": "0"}, "WALE_GS_CHUNK_MIB=0"), ({"WALE_GS_ENDPOINT": "ftp://x"}, "not an http"),
                      ({"WALE_GS_CA_BUNDLE": "/nonexistent.pem"}, "cannot be read")):
        p = wale("wal-push", path, prefix=gcs_prefix, env=bad, user=None)
        assert p.returncode == 1 and text in p.stderr.decode(), (bad, p.stderr.decode())
    assert not os.path.exists(os.path.join(scratch, "no"))


class Proxy:
    """tests/integration/faultproxy.py straight in front of fake-gcs-server (anonymous requests)."""

    def __init__(self, mode, count=0):
        port = urllib.parse.urlsplit(os.environ["WALE_TEST_GCS_EMULATOR"]).port
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "faultproxy.py"), mode, str(count), str(port)],
                                  stdout=subprocess.PIPE)
        self.port = int(self.p.stdout.readline())
        self.env = {**gcs_env("emulator"), "STORAGE_EMULATOR_HOST": f"127.0.0.1:{self.port}"}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.p.kill()
        self.p.wait()


@pytest.mark.xdist_group("fault-timing")
def test_gcs_faults(wale, gcs_prefix, scratch):
    path = os.path.join(scratch, SEG)
    make_segment(path)
    assert wale("wal-push", path, prefix=gcs_prefix, env=gcs_env("emulator"), user=None).returncode == 0
    quick = {"WALE_RETRIES": "3", "WALE_GS_REQUEST_TIMEOUT": "5", "WALE_STALL_TIMEOUT": "4"}
    patient = {"WALE_RETRIES": "3", "WALE_GS_REQUEST_TIMEOUT": "30", "WALE_STALL_TIMEOUT": "30"}
    # 5xx: retried, then success.
    with Proxy("errors", 2) as px:
        p = wale("wal-fetch", "-p", "0", SEG, os.path.join(scratch, "b1"), prefix=gcs_prefix, env={**px.env, **patient}, user=None)
        assert p.returncode == 0 and "retrying" in p.stderr.decode(), p.stderr.decode()
    # A reset half-way through the body of two downloads: resumed (pinned to the object's
    # generation), the result whole.
    with Proxy("reset-body", 2) as px:
        p = wale("wal-fetch", "-p", "0", SEG, os.path.join(scratch, "b2"), prefix=gcs_prefix, env={**px.env, **patient}, user=None)
        assert p.returncode == 0 and "resuming GET" in p.stderr.decode(), p.stderr.decode()
        assert sha256_file(os.path.join(scratch, "b2")) == sha256_file(path)
    # A stalled server and a trickling one: bounded time, exit 74 (wal-push) and 202 (wal-fetch).
    for mode in ("stall", "trickle"):
        with Proxy(mode) as px:
            t0 = time.time()
            p = wale("wal-push", path, prefix=gcs_prefix + "2", env={**px.env, **quick}, user=None, timeout=120)
            assert p.returncode == 74 and time.time() - t0 < 60, (mode, p.returncode, time.time() - t0, p.stderr.decode())
            t0 = time.time()
            p = wale("wal-fetch", SEG, os.path.join(scratch, "x"), prefix=gcs_prefix, env={**px.env, **quick}, user=None, timeout=120)
            assert p.returncode == 202 and time.time() - t0 < 60, (mode, p.returncode, time.time() - t0, p.stderr.decode())
            assert not os.path.exists(os.path.join(scratch, "x"))


def test_gcs_backup_push_resumes_chunks_after_resets(make_cluster, wale, gcs_prefix, scratch):
    """Resets half-way through three chunks of resumable uploads: each chunk is resumed from what
    GCS says it holds (a status query, answered as GCS answers it by tests/servers/gcs_auth.py),
    and the restored cluster matches the backup's manifest byte for byte."""
    c = make_cluster(15)
    c.initdb()
    c.start()
    c.pgbench("-i", "-s", "2", "-q")
    with Proxy("reset-upload", 3) as px:
        p = wale("backup-push", "--fast", c.data, prefix=gcs_prefix, env={**c.env(), **px.env, "WALE_GS_CHUNK_MIB": "1", "WALE_RETRIES": "4"})
        assert p.returncode == 0 and "retrying" in p.stderr.decode(), p.stderr.decode()
    target = os.path.join(scratch, "restored")
    f = wale("backup-fetch", target, "LATEST", prefix=gcs_prefix, env=gcs_env("emulator"))
    assert f.returncode == 0 and "every file matched the backup manifest" in f.stderr.decode(), f.stderr.decode()
