"""verify proves a stored backup restores without writing a data directory; wal-verify finds the
gaps in the WAL archive. Both are tried against damage: every object kind a restore reads,
with bytes flipped at several offsets, truncated and deleted, on file:// and on S3."""
import json
import os
import subprocess
import tempfile

import pytest

from harness import chown_pg, run, s3_env
from test_backups import backup_push, restore_config
from test_wal_archiving import archiving_cluster


class FileObjects:
    def __init__(self, adir):
        self.adir = adir

    def get(self, key):
        with open(os.path.join(self.adir, key), "rb") as f:
            return f.read()

    def put(self, key, data, metadata=None):
        with open(os.path.join(self.adir, key), "wb") as f:
            f.write(data)
        for k, v in (metadata or {}).items():
            os.setxattr(os.path.join(self.adir, key), "user." + k, v.encode())

    def metadata(self, key):
        """The object's metadata: the file's user extended attributes."""
        path = os.path.join(self.adir, key)
        return {n[5:]: os.getxattr(path, n).decode() for n in os.listxattr(path) if n.startswith("user.")}

    def delete(self, key):
        os.unlink(os.path.join(self.adir, key))

    def keys(self, under):
        d = os.path.join(self.adir, under)
        return sorted(os.path.join(under, n) for n in os.listdir(d))


def prefix_and_objects(request, store):
    """A fresh prefix on `store` ("file" or "s3") and its objects, read and written without wal-e."""
    if store == "file":
        prefix, adir = request.getfixturevalue("archive")
        return prefix, FileObjects(adir)
    prefix = request.getfixturevalue("s3_prefix")
    return prefix, S3Objects(prefix)


class S3Objects:
    """Objects in the test bucket, read and written with curl (not wal-e's code)."""

    def __init__(self, prefix):
        self.bucket, self.path = prefix.split("/", 3)[2], prefix.split("/", 3)[3]
        e = s3_env()
        self.base = e["WALE_S3_ENDPOINT"].replace("http+path://", "http://") + "/" + self.bucket + "/"
        self.auth = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{e['AWS_ACCESS_KEY_ID']}:{e['AWS_SECRET_ACCESS_KEY']}"]

    def curl(self, *args, data=None):
        p = subprocess.run(["curl", "-sf", *self.auth, *args], input=data, capture_output=True, timeout=60)
        assert p.returncode == 0, (args, p.stderr)
        return p.stdout

    def get(self, key):
        return self.curl(self.base + self.path + "/" + key)

    def metadata(self, key):
        """The object's user metadata (x-amz-meta-*), from a HEAD."""
        out = self.curl("-I", self.base + self.path + "/" + key).decode()
        return {k.strip().lower()[len("x-amz-meta-"):]: v.strip() for k, v in
                (line.split(":", 1) for line in out.splitlines() if line.lower().startswith("x-amz-meta-"))}

    def put(self, key, data, metadata=None):
        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            headers = [a for k, v in (metadata or {}).items() for a in ("-H", f"x-amz-meta-{k}: {v}")]
            self.curl(*headers, "-T", f.name, self.base + self.path + "/" + key)

    def delete(self, key):
        self.curl("-X", "DELETE", self.base + self.path + "/" + key)

    def keys(self, under):
        import re
        from urllib.parse import quote
        out = self.curl(self.base + "?list-type=2&prefix=" + quote(self.path + "/" + under, safe=""))
        return sorted(k.decode()[len(self.path) + 1:] for k in re.findall(rb"<Key>([^<]*)</Key>", out))


def verify(wale, prefix, *args, env=None):
    return wale("verify", *args, prefix=prefix, env={"WALE_RETRIES": "1", **(env or {})})


def backup_with_wal(make_cluster, wale, prefix):
    """A small cluster's backup (verify runs many times below; a debug build reads ~5 MB/s)."""
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS x")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    return c, name


@pytest.mark.parametrize("store", ["file", "s3"])
def test_verify_catches_every_damage(request, make_cluster, wale, store):
    prefix, objs = prefix_and_objects(request, store)
    c, name = backup_with_wal(make_cluster, wale, prefix)
    c.stop()

    p = verify(wale, prefix, name)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    line = p.stdout.decode().splitlines()[0].split("\t")
    assert line[:2] == [name, "ok"], line
    p = verify(wale, prefix, "--json")  # LATEST by default
    assert p.returncode == 0, p.stderr.decode()
    [r] = json.loads(p.stdout)
    assert r["name"] == name and r["ok"] and r["problems"] == [] and r["file_checksums"] and r["online"]
    assert r["partitions"] >= 2 and r["files"] > 900 and r["bytes"] > 10 << 20 and r["wal_segments"] >= 1

    bdir = f"basebackups_005/{name}/"
    kinds = {
        "partition": objs.keys(bdir + "tar_partitions")[0],
        "manifest": objs.keys(bdir + "wal_e_manifest")[0],
        "sentinel": f"basebackups_005/{name}_backup_stop_sentinel.json",
        "version": bdir + "extended_version.txt",
        "wal": f"wal_005/{name[5:29]}.lzo",
    }
    for kind, key in kinds.items():
        original = objs.get(key)
        damages = [(f"flip@{f}", None) for f in (0.02, 0.5, 0.97)] + [("truncate", None), ("delete", None)]
        for how, _ in damages:
            if how == "delete":
                objs.delete(key)
            elif how == "truncate":
                objs.put(key, original[: len(original) // 2])
            else:
                at = min(len(original) - 1, int(len(original) * float(how[5:])))
                objs.put(key, original[:at] + bytes([original[at] ^ 0x10]) + original[at + 1:])
            p = verify(wale, prefix, name)
            out = p.stdout.decode() + p.stderr.decode()
            assert p.returncode == (1 if how == "delete" else 65), f"{kind} {how}: {p.returncode}\n{out}"
            assert key in out, f"{kind} {how}: {key} not named\n{out}"
            assert "Traceback" not in out and "Fatal error" not in out
            objs.put(key, original)
        assert verify(wale, prefix, name).returncode == 0, kind

    p = verify(wale, prefix, "--all", "--json")
    assert p.returncode == 0 and [r["name"] for r in json.loads(p.stdout)] == [name]

    # Well-formed partitions holding what the manifest does not list, or a member a restore would
    # refuse: each named.
    key = kinds["partition"]
    original = objs.get(key)
    for member, says in (("base/1/extra_file", "which its manifest does not list"), ("../escape", "would be refused")):
        objs.put(key, with_member(original, member))
        p = verify(wale, prefix, name)
        out = p.stdout.decode()
        assert p.returncode == 65 and key in out and says in out and member in out, out + p.stderr.decode()
    objs.put(key, original)


def with_member(partition, name):
    """The lzop-compressed tar `partition` with one more regular file, still well-formed."""
    import io
    import tarfile
    raw = run(["lzop", "-dc"], input=partition).stdout
    src = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    out = io.BytesIO()
    dst = tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT)
    for m in src.getmembers():
        dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    extra = tarfile.TarInfo(name)
    extra.size = 5
    dst.addfile(extra, io.BytesIO(b"extra"))
    dst.close()
    return run(["lzop", "-c"], input=out.getvalue()).stdout


@pytest.mark.parametrize("store", ["file", "s3"])
def test_verify_checks_wal_against_the_digest_recorded_at_push(request, make_cluster, wale, scratch, store):
    """A WAL object whose codec is sound and whose segment is well formed, but whose content is not
    what wal-push read from pg_wal (re-encoded with a changed record byte, the metadata kept): the
    digest recorded at push catches it in verify, wal-verify --integrity and wal-fetch (which
    writes nothing and aborts recovery: 128 + 65); no other check can."""
    prefix, objs = prefix_and_objects(request, store)
    c, name = backup_with_wal(make_cluster, wale, prefix)
    c.stop()
    key = f"wal_005/{name[5:29]}.lzo"
    meta = objs.metadata(key)
    assert meta.get("wale-content-xxh3-128") and meta.get("wale-content-size") == str(16 << 20), meta
    raw = bytearray(subprocess.run(["lzop", "-dc"], input=objs.get(key), capture_output=True, check=True).stdout)
    assert len(raw) == 16 << 20
    raw[(8 << 20) + 1000] ^= 0x10  # a record byte far from the first page header
    objs.put(key, subprocess.run(["lzop", "-c"], input=bytes(raw), capture_output=True, check=True).stdout, metadata=meta)
    assert objs.metadata(key) == meta
    for args in (("verify", name), ("wal-verify", "--integrity")):
        p = wale(*args, prefix=prefix, env={"WALE_RETRIES": "1"})
        out = p.stdout.decode() + p.stderr.decode()
        assert p.returncode == 65, f"{args}: {p.returncode}\n{out}"
        assert key in out and "does not hold the bytes wal-push archived" in out, out
        assert "Traceback" not in out and "Fatal error" not in out
    pg_wal = os.path.join(scratch, "restore-here")
    os.mkdir(pg_wal)
    chown_pg(pg_wal)
    dest = os.path.join(pg_wal, "RECOVERYXLOG")
    p = wale("wal-fetch", name[5:29], dest, prefix=prefix, env={"WALE_RETRIES": "1"})
    out = p.stderr.decode()
    assert p.returncode == 128 + 65 and "does not hold the bytes wal-push archived" in out, f"{p.returncode}\n{out}"
    # Nothing where PostgreSQL could read it, no temporary beside it (the prefetch area aside).
    assert not os.path.exists(dest) and [n for n in os.listdir(pg_wal) if n != ".wal-e"] == [], os.listdir(pg_wal)


def test_verify_reads_a_wal_e_backup_and_gpg(make_cluster, wale, archive, scratch):
    """WAL-E's backups have no manifest: the structural checks run and the report says so."""
    prefix, adir = archive
    c, name = backup_with_wal(make_cluster, wale, prefix)
    c.stop()
    bdir = os.path.join(adir, "basebackups_005", name)
    # As WAL-E 1.1 writes it: no manifest directory, a sentinel with only WAL-E's keys.
    run(["rm", "-rf", os.path.join(bdir, "wal_e_manifest")])
    sentinel = os.path.join(adir, "basebackups_005", name + "_backup_stop_sentinel.json")
    s = json.load(open(sentinel))
    wale_keys = ["wal_segment_backup_stop", "wal_segment_offset_backup_stop", "expanded_size_bytes", "spec"]
    with open(sentinel, "w") as f:
        json.dump({k: s[k] for k in wale_keys}, f)
    p = wale("verify", name, prefix=prefix)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    assert "file checksums not available" in p.stdout.decode()
    p = wale("verify", name, "--json", prefix=prefix)
    [r] = json.loads(p.stdout)
    assert r["ok"] and not r["file_checksums"] and r["wal_segments"] >= 1

    # A name with no backup, and a bad name: clear errors, exit 1 / usage.
    p = wale("verify", "base_000000010000000000000099_00000040", prefix=prefix)
    assert p.returncode == 1 and "no backup to verify" in p.stderr.decode()
    p = wale("verify", "nonsense", prefix=prefix)
    assert p.returncode == 1 and "invalid backup query" in p.stderr.decode()


def test_wal_verify_finds_the_gap_across_a_promotion(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c, name = backup_with_wal(make_cluster, wale, prefix)
    for _ in range(3):
        c.psql("SELECT pg_switch_wal()")
        c.psql("CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t SELECT generate_series(1, 1000)")
    c.wait_archived()
    c.stop()
    # Restore and promote: timeline 2, with its history file archived.
    r2 = make_cluster(15, "restored")
    r = wale("backup-fetch", r2.data, name, "--recovery-target-action", "promote", "--prepare-recovery", prefix=prefix)
    assert r.returncode == 0, r.stderr.decode()
    restore_config(c, r2.data, r2.port)
    r2.configure(archive_mode="on", archive_command="'" + wale.command_line(prefix, "wal-push %p") + "'")
    r2.start()
    r2.wait_until("SELECT pg_is_in_recovery()", "f", timeout=300)
    r2.psql("SELECT pg_switch_wal()")
    r2.psql("INSERT INTO t SELECT generate_series(1, 1000)")
    r2.psql("SELECT pg_switch_wal()")
    r2.wait_archived()
    r2.stop()
    assert os.path.exists(os.path.join(adir, "wal_005", "00000002.history.lzo"))

    p = wale("wal-verify", "--json", prefix=prefix)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    rep = json.loads(p.stdout)
    assert rep["ok"] and [t["timeline"] for t in rep["timelines"]] == [1, 2]
    t2 = rep["timelines"][1]
    assert t2["history"] == [1] and t2["gaps"] == [] and t2["newest"].startswith("00000002")
    assert [b["recoverable_to_end"] for b in rep["backups"]] == [True] and rep["backups"][0]["timeline"] == 2
    assert rep["newest_segment_age_seconds"] < 600

    # One segment after the backup's start, on timeline 1, deleted: exactly that gap, and the backup cut off.
    segs = sorted(n[:24] for n in os.listdir(os.path.join(adir, "wal_005")) if n.startswith("00000001") and len(n) == 28)
    start = name[5:29]
    gone = [s for s in segs if s > start][1]
    saved = os.path.join(scratch, "saved.lzo")
    os.rename(os.path.join(adir, "wal_005", gone + ".lzo"), saved)
    p = wale("wal-verify", "--json", prefix=prefix)
    assert p.returncode == 1, p.stdout.decode() + p.stderr.decode()
    rep = json.loads(p.stdout)
    t2 = [t for t in rep["timelines"] if t["timeline"] == 2][0]
    assert t2["gaps"] == [{"first": gone, "last": gone, "count": 1}], t2
    assert rep["backups"][0]["recoverable_to_end"] is False and rep["backups"][0]["first_gap"]["first"] == gone
    p = wale("wal-verify", prefix=prefix)
    assert p.returncode == 1 and f"missing: {gone}" in p.stdout.decode() and "cannot be recovered past" in p.stdout.decode()

    # Restored: no gap. --integrity reads every segment; a damaged one is named (65).
    os.rename(saved, os.path.join(adir, "wal_005", gone + ".lzo"))
    p = wale("wal-verify", "--integrity", "--json", prefix=prefix)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    rep = json.loads(p.stdout)
    assert rep["ok"] and rep["checked_segments"] >= len([s for s in segs if s >= start])
    path = os.path.join(adir, "wal_005", gone + ".lzo")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(path, "wb").write(bytes(data))
    p = wale("wal-verify", "--integrity", prefix=prefix, env={"WALE_RETRIES": "1"})
    assert p.returncode == 65 and f"wal_005/{gone}" in p.stdout.decode(), p.stdout.decode() + p.stderr.decode()
    # Without --integrity only presence is checked.
    assert wale("wal-verify", prefix=prefix).returncode == 0


def prometheus_samples(path):
    """{metric name: value} read by the official parser (all samples carry the prefix label)."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for family in text_string_to_metric_families(open(path).read()):
        for s in family.samples:
            out[s.name] = (s.value, s.labels)
    return out


def test_status_and_prometheus_metrics_match_the_archive(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c, first = backup_with_wal(make_cluster, wale, prefix)
    c.psql("INSERT INTO t SELECT generate_series(1, 1000)")
    second = backup_push(wale, c, prefix, "--fast", "--permanent").stdout.decode().strip()
    for _ in range(3):
        c.psql("INSERT INTO t SELECT generate_series(1, 1000)")
        c.psql("SELECT pg_switch_wal()")
    c.wait_archived()
    c.stop()
    metrics = os.path.join(scratch, "wal_e.prom")
    open(metrics, "w").close()
    os.chmod(metrics, 0o666)
    os.chmod(scratch, 0o777)

    p = wale("status", "--json", "--prometheus", metrics, prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    st = json.loads(p.stdout)
    assert st["backups"]["count"] == 2 and st["backups"]["permanent"] == 1
    assert st["backups"]["newest"]["name"] == second and st["backups"]["oldest"]["name"] == first
    sentinel = json.load(open(os.path.join(adir, "basebackups_005", second + "_backup_stop_sentinel.json")))
    assert st["backups"]["newest"]["expanded_size_bytes"] == sentinel["expanded_size_bytes"]
    assert st["wal"]["ok"] and st["wal"]["timelines"][0]["gaps"] == []

    m = prometheus_samples(metrics)
    assert m["wal_e_backup_count"][0] == 2 and m["wal_e_backup_permanent_count"][0] == 1
    assert m["wal_e_backup_count"][1] == {"prefix": prefix}
    assert m["wal_e_backup_last_size_bytes"][0] == sentinel["expanded_size_bytes"]
    sentinel_mtime = os.stat(os.path.join(adir, "basebackups_005", second + "_backup_stop_sentinel.json")).st_mtime
    assert abs(m["wal_e_backup_last_completion_timestamp_seconds"][0] - sentinel_mtime) < 1
    wal = [os.path.join(adir, "wal_005", n) for n in os.listdir(os.path.join(adir, "wal_005")) if len(n) == 28]
    newest = max(wal)
    assert abs(m["wal_e_wal_last_archived_timestamp_seconds"][0] - os.stat(newest).st_mtime) < 1
    assert m["wal_e_wal_gaps"][0] == 0 and m["wal_e_wal_missing_segments"][0] == 0
    assert m["wal_e_backup_last_recoverable"][0] == 1

    # A segment after the newest backup's start removed: one gap, the newest backup cut off.
    after = sorted(w for w in wal if os.path.basename(w)[:24] > second[5:29])
    os.rename(after[0], after[0] + ".away")
    p = wale("status", "--prometheus", metrics, prefix=prefix)
    assert p.returncode == 0 and "1 segments missing" in p.stdout.decode(), p.stdout.decode()
    m = prometheus_samples(metrics)
    assert m["wal_e_wal_gaps"][0] == 1 and m["wal_e_wal_missing_segments"][0] == 1 and m["wal_e_backup_last_recoverable"][0] == 0
    os.rename(after[0] + ".away", after[0])

    # verify --prometheus: a success time, carried forward when a later run fails.
    vm = os.path.join(scratch, "wal_e_verify.prom")
    open(vm, "w").close()
    os.chmod(vm, 0o666)
    assert wale("verify", "--all", "--prometheus", vm, prefix=prefix).returncode == 0
    ok = prometheus_samples(vm)
    assert ok["wal_e_verify_last_ok"][0] == 1
    os.rename(os.path.join(adir, "basebackups_005", first, "extended_version.txt"), os.path.join(scratch, "v"))
    assert wale("verify", "--all", "--prometheus", vm, prefix=prefix).returncode == 1
    bad = prometheus_samples(vm)
    assert bad["wal_e_verify_last_ok"][0] == 0
    assert bad["wal_e_verify_last_success_timestamp_seconds"][0] == ok["wal_e_verify_last_success_timestamp_seconds"][0]
    assert bad["wal_e_verify_last_run_timestamp_seconds"][0] >= ok["wal_e_verify_last_run_timestamp_seconds"][0]
    # An unwritable metrics path: a clear error, not a crash.
    p = wale("status", "--prometheus", "/nonexistent/dir/x.prom", prefix=prefix)
    assert p.returncode == 74 and "cannot write the metrics file" in p.stderr.decode(), p.stderr.decode()
