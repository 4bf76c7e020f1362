"""Faults: kill -9 of backup-push, corrupt and tampered partitions, hostile tar members."""
import io
import os
import signal
import subprocess
import tarfile
import time

from harness import PG, chown_pg, run
from test_backups import backup_push
from test_wal_archiving import archiving_cluster


def popen_wale(wale, args, prefix, env):
    e = {**os.environ, "WALE_FILE_PREFIX": prefix, "WALE_LOG_DESTINATION": "stderr", **env}
    return subprocess.Popen([wale.path, *args], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: (os.setgid(PG.pw_gid), os.setuid(PG.pw_uid)) and None)


def no_backups_listed(wale, prefix, scratch):
    out = wale("backup-list", prefix=prefix).stdout.decode()
    assert out == "name\tlast_modified\texpanded_size_bytes\twal_segment_backup_start\twal_segment_offset_backup_start\twal_segment_backup_stop\twal_segment_offset_backup_stop\r\n"
    p = wale("backup-fetch", os.path.join(scratch, "nothing"), "LATEST", prefix=prefix)
    assert p.returncode == 1 and "no backups found for fetching" in p.stderr.decode()


def test_kill_during_upload_and_before_sentinel(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    flag = os.path.join(scratch, "archiving-broken")
    c = make_cluster(15)
    # archive_command that fails while the flag file exists: pg_backup_stop then waits forever.
    cmd = f"test ! -e {flag} && " + wale.command_line(prefix, "wal-push %p")
    c.initdb(archive_mode="on", archive_command="'" + cmd + "'", wal_keep_size="'1GB'")
    c.start()
    c.pgbench("-i", "-s", "6", "-q")

    # 1. During the upload: the read rate limit keeps it uploading for a while.
    p = popen_wale(wale, ["backup-push", "--fast", "--cluster-read-rate-limit", "4000000", c.data], prefix, c.env())
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(os.path.join(adir, "basebackups_005")):
        time.sleep(0.1)
    time.sleep(1.5)
    assert p.poll() is None, p.stderr.read().decode()
    p.send_signal(signal.SIGKILL)
    p.wait()
    no_backups_listed(wale, prefix, scratch)

    # 2. Before the sentinel: the backup is stopped and waits for its WAL to reach the archive,
    # which the broken archive_command never delivers; it says so instead of hanging silently.
    open(flag, "w").close()
    c.psql("SELECT pg_switch_wal()")
    p = popen_wale(wale, ["backup-push", "--fast", c.data], prefix, c.env())
    deadline = time.time() + 60
    while time.time() < deadline:
        if c.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_stat_archiver%' AND pid <> pg_backend_pid()") == "1":
            break
        time.sleep(0.2)
    time.sleep(2.5)
    assert p.poll() is None, p.stderr.read().decode()
    p.send_signal(signal.SIGKILL)
    p.wait()
    err = p.stderr.read().decode()
    assert "waiting for" in err and "the archiver is failing while backup-push waits" in err
    no_backups_listed(wale, prefix, scratch)

    # 3. A later backup succeeds (the server aborted the killed session's backup).
    os.unlink(flag)
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    listed = wale("backup-list", prefix=prefix).stdout.decode().split("\r\n")[1:-1]
    assert [l.split("\t")[0] for l in listed] == [name]


def test_wal_archived_to_another_prefix_is_named_while_backup_push_waits(make_cluster, wale, archive, scratch):
    """archive_command succeeds but archives elsewhere: backup-push says so within seconds, keeps
    waiting for its own prefix until --archive-timeout, then fails without marking the backup."""
    prefix, _ = archive
    other = "file://localhost" + os.path.join(scratch, "other-archive")
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'" + wale.command_line(other, "wal-push %p") + "'")
    c.start()
    started = time.monotonic()
    p = popen_wale(wale, ["backup-push", "--fast", "--archive-timeout", "12", c.data], prefix, c.env())
    _, err = p.communicate(timeout=120)
    err = err.decode()
    took = time.monotonic() - started
    assert p.returncode == 74, err
    assert "but it is not in " + prefix in err and "archive_command archives somewhere else" in err, err
    assert "was not archived within 12 s" in err and "reported" in err, err
    assert err.index("but it is not in") < err.index("was not archived within"), err
    assert took < 60, took
    no_backups_listed(wale, prefix, scratch)


def damage_partition(adir, name, how):
    pdir = os.path.join(adir, "basebackups_005", name, "tar_partitions")
    part = os.path.join(pdir, sorted(os.listdir(pdir))[0])
    if how == "flip":
        data = bytearray(open(part, "rb").read())
        data[len(data) // 3] ^= 0x10
        open(part, "wb").write(bytes(data))
    else:  # rewrite one file's content inside a still-valid tar and lzop stream
        raw = run(["lzop", "-dc", part]).stdout
        src = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
        out = io.BytesIO()
        dst = tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT)
        done = False
        for m in src.getmembers():
            f = src.extractfile(m) if m.isfile() else None
            data = f.read() if f else None
            if data and not done and m.name.startswith("base/") and len(data) >= 8192:
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                done = True
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
        dst.close()
        assert done
        open(part, "wb").write(run(["lzop", "-c"], input=out.getvalue()).stdout)
    return os.path.relpath(part, adir)


def manifest_fields(adir, name):
    """The checksum fields the backup's manifests use for their files."""
    import json
    mdir = os.path.join(adir, "basebackups_005", name, "wal_e_manifest")
    fields = set()
    for f in os.listdir(mdir):
        for entry in json.load(open(os.path.join(mdir, f)))["files"]:
            fields |= set(entry) - {"path", "size", "mode", "mtime", "mtime_ns"}  # mtime: the file-level incremental's, no checksum
    return fields


def test_corrupt_and_tampered_partitions_are_reported(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "2", "-q")
    name = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    key = damage_partition(adir, name, "tamper")
    p = wale("backup-fetch", os.path.join(scratch, "r1"), name, prefix=prefix, env={"WALE_RETRIES": "1"})
    assert p.returncode == 65, p.stderr.decode()
    assert "does not match the backup manifest" in p.stderr.decode() and key in p.stderr.decode()

    # Manifests checksum each file with CRC-32C by default (as PostgreSQL's own backup manifests);
    # WALE_MANIFEST_CHECKSUM=sha256 gives SHA-256, which restores verify just the same.
    assert manifest_fields(adir, name) == {"crc32c"}
    name_sha = backup_push(wale, c, prefix, "--fast", env={"WALE_MANIFEST_CHECKSUM": "sha256"}).stdout.decode().strip()
    assert manifest_fields(adir, name_sha) == {"sha256"}
    p = wale("backup-fetch", os.path.join(scratch, "r-sha"), name_sha, prefix=prefix)
    assert p.returncode == 0 and "every file matched the backup manifest" in p.stderr.decode(), p.stderr.decode()
    key = damage_partition(adir, name_sha, "tamper")
    p = wale("backup-fetch", os.path.join(scratch, "r-sha2"), name_sha, prefix=prefix, env={"WALE_RETRIES": "1"})
    assert p.returncode == 65 and "does not match the backup manifest" in p.stderr.decode() and "sha256" in p.stderr.decode()
    bad = backup_push(wale, c, prefix, "--fast", check=False, env={"WALE_MANIFEST_CHECKSUM": "md4"})
    assert bad.returncode == 1 and "WALE_MANIFEST_CHECKSUM=md4" in bad.stderr.decode()

    name2 = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    key = damage_partition(adir, name2, "flip")
    p = wale("backup-fetch", os.path.join(scratch, "r2"), name2, prefix=prefix, env={"WALE_RETRIES": "2"})
    assert p.returncode == 65, p.stderr.decode()
    err = p.stderr.decode()
    assert "retrying the restore of" in err and key in err and "corrupt" in err


def fake_backup(adir, members):
    """A WAL-E-shaped backup whose only partition holds the given (name, TarInfo-kwargs, data)."""
    name = "base_000000010000000000000002_00000040"
    pdir = os.path.join(adir, "basebackups_005", name, "tar_partitions")
    os.makedirs(pdir)
    out = io.BytesIO()
    t = tarfile.open(fileobj=out, mode="w:", format=tarfile.GNU_FORMAT)
    for mname, kw, data in members:
        ti = tarfile.TarInfo(mname)
        for k, v in kw.items():
            setattr(ti, k, v)
        ti.size = len(data or b"")
        t.addfile(ti, io.BytesIO(data) if data else None)
    t.close()
    open(os.path.join(pdir, "part_0.tar.lzo"), "wb").write(run(["lzop", "-c"], input=out.getvalue()).stdout)
    with open(os.path.join(adir, "basebackups_005", name + "_backup_stop_sentinel.json"), "w") as f:
        f.write('{"wal_segment_backup_stop": "000000010000000000000002", "wal_segment_offset_backup_stop": "00000100", '
                '"expanded_size_bytes": 5, "spec": {"base_prefix": "/x/", "tablespaces": []}}')
    return name


def test_hostile_tar_members_are_refused(wale, archive, scratch):
    prefix, adir = archive
    cases = [
        ([("../escaped", {}, b"evil")], "path contains .."),
        ([("/tmp/wal-e-absolute-escape", {}, b"evil")], "absolute path"),
        ([("link", {"type": tarfile.SYMTYPE, "linkname": scratch}, None), ("link/escaped", {}, b"evil")],
         "symbolic link leading outside"),
    ]
    for i, (members, message) in enumerate(cases):
        a = os.path.join(scratch, f"archive{i}")
        name = fake_backup(a, members)
        target = os.path.join(scratch, f"target{i}")
        p = wale("backup-fetch", target, name, prefix="file://localhost" + a, env={"WALE_RETRIES": "1"})
        assert p.returncode == 65, p.stderr.decode()
        assert message in p.stderr.decode()
        assert not os.path.exists(os.path.join(scratch, "escaped"))
        assert not os.path.exists("/tmp/wal-e-absolute-escape")


def test_a_failed_restore_leaves_no_cluster_postgres_would_start(make_cluster, wale, archive, scratch):
    """global/pg_control comes into place last (as pgBackRest does it): a restore that fails half
    way leaves a directory PostgreSQL refuses, not one it would start on and silently corrupt."""
    prefix, adir = archive
    c = archiving_cluster(make_cluster, wale, prefix, 15)
    c.pgbench("-i", "-s", "2", "-q")
    good = backup_push(wale, c, prefix, "--fast").stdout.decode().strip()
    name = backup_push(wale, c, prefix, "--fast", "--partition-size", str(1 << 20)).stdout.decode().strip()
    pdir = os.path.join(adir, "basebackups_005", name, "tar_partitions")
    parts = sorted(os.listdir(pdir))
    members = [subprocess.run(f"lzop -dc {os.path.join(pdir, p)} | tar -tf -", shell=True, capture_output=True, check=True)
               .stdout.decode().split("\n") for p in parts]
    control = next(i for i, m in enumerate(members) if "global/pg_control" in m)
    # The last partition, which holds backup_label: every data file is restored before it fails,
    # the most dangerous moment (without backup_label PostgreSQL would run crash recovery instead).
    damaged = len(parts) - 1
    assert members[damaged][0] == "backup_label" and control < damaged, (control, damaged, members[damaged])
    data = bytearray(open(os.path.join(pdir, parts[damaged]), "rb").read())
    data[len(data) // 2] ^= 0x10
    open(os.path.join(pdir, parts[damaged]), "wb").write(bytes(data))

    target = os.path.join(scratch, "half")
    p = wale("backup-fetch", "--pool-size", "1", target, name, prefix=prefix, env={"WALE_RETRIES": "1"})
    assert p.returncode == 65, p.stderr.decode()
    assert os.path.exists(os.path.join(target, "global", "pg_filenode.map"))  # global/ was restored...
    assert not os.path.exists(os.path.join(target, "global", "pg_control"))  # ...but not its pg_control
    assert run([c.bin("pg_controldata"), target], check=False).returncode != 0

    # A complete restore into the same directory puts it in place and leaves nothing behind.
    p = wale("backup-fetch", target, good, prefix=prefix)
    assert p.returncode == 0, p.stderr.decode()
    assert not os.path.exists(os.path.join(target, "global", "pg_control.wal-e-restoring"))
    assert "Database cluster state" in run([c.bin("pg_controldata"), target]).stdout.decode()
