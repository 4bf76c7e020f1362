"""What the fault sweep found at the edges of the archive: temporaries left by killed writers,
damaged sentinels, backup-list queries that match nothing, tar owners, and secrets in messages."""
import io
import json
import os
import signal
import subprocess
import tarfile
import time

from harness import PG, run
from test_backups import backup_push
from test_bad_input import make_segment
from test_wal_archiving import archiving_cluster

HEADER = "name\tlast_modified\texpanded_size_bytes\twal_segment_backup_start\twal_segment_offset_backup_start\twal_segment_backup_stop\twal_segment_offset_backup_stop\r\n"


def temporaries(adir):
    found = []
    for d, dirs, files in os.walk(adir):
        found += [os.path.join(d, n) for n in files + dirs if n.startswith(".wal-e-tmp")]
    return found


def test_killed_pushes_leave_no_temporary_for_ever(wale, archive, scratch):
    prefix, adir = archive
    segs = []
    for i in range(24):
        name = f"0000000100000000000000{0x20 + i:02X}"
        path = os.path.join(scratch, name)
        make_segment(path, name=name)
        segs.append(path)
    env = {**os.environ, "WALE_FILE_PREFIX": prefix, "WALE_LOG_DESTINATION": "stderr"}
    leftovers = 0
    for i, path in enumerate(segs[:20]):
        p = subprocess.Popen([wale.path, "wal-push", path], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Spread over a push's whole life (start-up, compression, write, rename): some land mid-write.
        time.sleep(0.008 * i + 0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
        leftovers = max(leftovers, len(temporaries(adir)))
    # A normal push leaves nothing behind, and its directory of temporaries goes when empty.
    assert wale("wal-push", segs[20], prefix=prefix, user=None).returncode == 0
    stale = temporaries(adir)
    # Every temporary a killed writer left is in the hidden subdirectory, none beside the objects.
    assert all("/.wal-e-tmp.d" in t for t in stale), stale
    # A fresh one may belong to a writer still running: kept. Once old, the next write removes it.
    assert wale("wal-push", segs[21], prefix=prefix, user=None).returncode == 0
    assert [t for t in temporaries(adir) if not t.endswith(".wal-e-tmp.d")] == [t for t in stale if not t.endswith(".wal-e-tmp.d")]
    old = time.time() - 2 * 3600
    for t in stale:
        os.utime(t, (old, old))
    fake = os.path.join(adir, "wal_005", ".wal-e-tmp.d", ".wal-e-tmp.000000010000000000000099.lzo.1.x")
    os.makedirs(os.path.dirname(fake), exist_ok=True)
    open(fake, "w").write("half an object")
    os.utime(fake, (old, old))
    assert wale("wal-push", segs[22], prefix=prefix, user=None).returncode == 0
    assert temporaries(adir) == [], temporaries(adir)
    # Never listed as objects: the archived names are exactly what was pushed completely.
    listed = sorted(os.listdir(os.path.join(adir, "wal_005")))
    assert all(n.endswith(".lzo") and not n.startswith(".") for n in listed), listed
    assert leftovers > 0, "no kill landed during a write: the delays no longer cover one"
    print(f"killed pushes left up to {leftovers} temporaries")


def test_backup_list_query_without_match_is_wal_e_s_header_and_0(wale, archive):
    prefix, _ = archive
    for q in ("LATEST", "base_000000010000000000000002_00000040"):
        p = wale("backup-list", q, prefix=prefix)
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout.decode() == HEADER
    bad = wale("backup-list", "not-a-backup", prefix=prefix)
    assert bad.returncode == 1 and bad.stdout.decode() == HEADER
    assert "invalid backup query" in bad.stderr.decode()


def test_damaged_sentinel_is_reported_and_owner_names_in_tars(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "1", "-q")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()

    # Members wal-e writes itself (backup_label) carry the data directory's owner, by id and name,
    # like every member walked from the cluster.
    pdir = os.path.join(adir, "basebackups_005", name, "tar_partitions")
    owners = set()
    for part in sorted(os.listdir(pdir)):
        raw = run(["lzop", "-dc", os.path.join(pdir, part)]).stdout
        for m in tarfile.open(fileobj=io.BytesIO(raw), mode="r:"):
            owners.add((m.name, m.uid, m.gid, m.uname, m.gname) if m.name in ("backup_label", "PG_VERSION") else None)
    owners.discard(None)
    assert owners == {("backup_label", PG.pw_uid, PG.pw_gid, "postgres", "postgres"),
                      ("PG_VERSION", PG.pw_uid, PG.pw_gid, "postgres", "postgres")}, owners

    sentinel = os.path.join(adir, "basebackups_005", name + "_backup_stop_sentinel.json")
    text = open(sentinel).read()
    body = json.loads(text)
    assert len(body["wal_e_sentinel_sha256"]) == 64
    assert wale("backup-list", "--detail", prefix=prefix).returncode == 0
    # One digit of the stop segment changed, the JSON still valid.
    stop = body["wal_segment_backup_stop"]
    changed = stop[:-1] + ("1" if stop[-1] != "1" else "2")
    i = text.index('"wal_segment_backup_stop"')
    j = text.index(stop, i)
    open(sentinel, "w").write(text[:j] + changed + text[j + len(stop):])
    assert json.load(open(sentinel))["wal_segment_backup_stop"] == changed
    for args in (("backup-list", "--detail"), ("backup-fetch", os.path.join(scratch, "r"), name)):
        p = wale(*args, prefix=prefix)
        assert p.returncode == 65, (args, p.stderr.decode())
        assert "is damaged: its content does not match its checksum" in p.stderr.decode() and name in p.stderr.decode()
    assert not os.path.exists(os.path.join(scratch, "r", "PG_VERSION"))
    d = wale("delete", "retain", "1", prefix=prefix)
    assert "is damaged" in d.stderr.decode(), d.stderr.decode()


def test_no_secret_in_any_message_for_malformed_configuration(wale, s3_prefix, wabs_prefix, scratch):
    path = os.path.join(scratch, "000000010000000000000003")
    make_segment(path, name="000000010000000000000003")
    secret = os.environ["WALE_TEST_S3_SECRET_KEY"]
    token = "SESSIONTOKENSECRET"
    bad = ["us east\n1", "x\ry", "\u00e9t\u00e9", " ", "http://", "-1", "0", "nan", "a" * 300, "\n"]
    s3_vars = ["AWS_REGION", "WALE_S3_ENDPOINT", "AWS_ENDPOINT_URL", "WALE_S3_CA_BUNDLE", "WALE_S3_SSE", "WALE_S3_SSE_KMS_KEY_ID",
               "WALE_S3_STORAGE_CLASS", "WALE_S3_REQUEST_TIMEOUT", "WALE_S3_UPLOAD_MEMORY_MIB", "WALE_S3_CHECKSUM",
               "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "WALE_STALL_TIMEOUT", "WALE_STALL_MIN_RATE",
               "WALE_RETRIES", "WALE_COMPRESSION", "WALE_LOG_DESTINATION"]
    wabs_vars = ["WABS_ENDPOINT", "WABS_ACCOUNT_NAME", "WABS_SAS_TOKEN", "WALE_WABS_REQUEST_TIMEOUT", "WALE_STALL_TIMEOUT"]
    wabs_key = os.environ["WALE_TEST_WABS_KEY"]
    checked = 0
    for prefix, names, secrets in ((s3_prefix, s3_vars, [secret, token]), (wabs_prefix, wabs_vars, [wabs_key])):
        for var in names:
            for value in bad:
                env = {var: value, "WALE_RETRIES": "1", "WALE_S3_REQUEST_TIMEOUT": "5", "WALE_WABS_REQUEST_TIMEOUT": "5"}
                if var == "WALE_RETRIES":
                    env[var] = value
                if prefix.startswith("s3") and var != "AWS_SESSION_TOKEN":
                    env["AWS_SESSION_TOKEN"] = token
                for args in (("wal-push", path), ("backup-list",)):
                    p = wale(*args, prefix=prefix, env=env, user=None, timeout=120)
                    out = (p.stdout + p.stderr).decode(errors="replace")
                    # The header's name or value (a store's error code may say "Authorization...Error").
                    for s in secrets + ["Signature=", "Authorization:", "authorization:", "AWS4-HMAC-SHA256 Credential", "SharedKey "]:
                        assert s not in out, (var, repr(value), args, out)
                    assert "Traceback" not in out and "Fatal error" not in out, (var, repr(value), out)
                    assert 0 <= p.returncode < 126, (var, repr(value), args, p.returncode, out)
                    checked += 1
    assert checked == 2 * len(bad) * (len(s3_vars) + len(wabs_vars))
