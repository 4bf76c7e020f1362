"""A wal-push killed in the middle of a multipart upload (S3) or a Static Large Object (Swift)
leaves parts the store keeps and bills but never lists as objects. backup-push and delete --confirm
sweep them under their prefix once older than WALE_ABANDONED_UPLOAD_AGE (default a day), and
nothing else: a young upload (maybe still running elsewhere), another prefix's, and the segments of
a complete large object stay."""
import os
import signal
import subprocess
import time

import pytest

from harness import s3_env, swift_request
from test_bad_input import make_segment


def random_segment(path, name):
    """A segment that does not compress: more than one part on S3 (5 MiB) and Swift (8 MiB)."""
    make_segment(path, name=name)
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom((16 << 20) - 4096))


def s3_uploads(bucket):
    """(key, upload id) of every multipart upload in the bucket, read without wal-e's code."""
    e = s3_env()
    p = subprocess.run(
        ["curl", "-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{e['AWS_ACCESS_KEY_ID']}:{e['AWS_SECRET_ACCESS_KEY']}",
         e["WALE_S3_ENDPOINT"].replace("http+path://", "http://") + "/" + bucket + "?uploads="],
        capture_output=True, timeout=60, check=True)
    import re
    return re.findall(rb"<Key>([^<]*)</Key>\s*<UploadId>([^<]*)</UploadId>", p.stdout)


def swift_segments(container):
    import json
    status, body = swift_request("GET", f"/{container}_segments?format=json")
    return [] if status == 404 else [o["name"] for o in json.loads(body)]


def leftovers(store, prefix):
    bucket = prefix.split("/")[2]
    if store == "s3":
        return [k.decode() for k, _ in s3_uploads(bucket)]
    return swift_segments(bucket)


def settled_leftovers(store, prefix):
    """The leftovers once the listing stops changing: a segment whose PUT the killed process had
    sent in full is stored, and shows in Swift's container listing (updated asynchronously) a
    moment after the kill; counting it as the complete backup's would make the test racy."""
    last = leftovers(store, prefix)
    for _ in range(30):
        time.sleep(1)
        now = leftovers(store, prefix)
        if now == last:
            return now
        last = now
    return last


def upload_of(name):
    """The upload a leftover belongs to: a Swift segment's KEY/UPLOAD, an S3 upload's key."""
    return name.rsplit("/", 1)[0] if name.rsplit("/", 1)[-1].isdigit() else name


def stopped_cluster(make_cluster, mib=48):
    """A stopped cluster with an incompressible file, so its partition is a parted upload."""
    c = make_cluster(15)
    c.initdb()
    with open(os.path.join(c.data, "base", "random.bin"), "wb") as f:
        f.write(os.urandom(mib << 20))
    return c


def kill_mid_upload(wale, prefix, cluster, store):
    """Kills backup-push --while-offline at growing delays until one kill leaves an unfinished upload behind."""
    env = {**os.environ, **wale.env_prefix(prefix), "PATH": cluster.bindir + ":" + os.environ["PATH"]}
    for i in range(40):
        p = subprocess.Popen([wale.path, "backup-push", "--while-offline", cluster.data], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.04 * i + 0.1)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if [x for x in leftovers(store, prefix) if x.startswith(prefix.split("/", 3)[3] + "/basebackups_005/")]:
            settled_leftovers(store, prefix)
            return
    pytest.fail("no kill landed in the middle of an upload: the delays no longer cover one")


@pytest.mark.parametrize("store", ["s3", "swift"])
def test_uploads_killed_part_way_are_swept_when_old(request, make_cluster, wale, store, scratch):
    prefix = request.getfixturevalue(store + "_prefix")
    c = stopped_cluster(make_cluster)
    env = {"PATH": c.bindir + ":" + os.environ["PATH"]}
    kill_mid_upload(wale, prefix, c, store)
    left = leftovers(store, prefix)
    assert left and all(x.startswith("pg/basebackups_005/") for x in left), left
    # A complete backup (the same name: the killed ones never wrote a sentinel); on Swift its
    # partitions are large objects whose segments every sweep keeps. Its own sweep keeps the young.
    r = wale("backup-push", "--while-offline", c.data, prefix=prefix, env=env)
    assert r.returncode == 0, r.stderr.decode()
    name = r.stdout.decode().strip()
    killed = {upload_of(x) for x in left}
    complete = [x for x in settled_leftovers(store, prefix) if upload_of(x) not in killed]
    assert store == "s3" or complete, "the complete partition was not a large object"
    assert set(left) <= set(leftovers(store, prefix))
    # Another prefix's leftover in the same bucket/container is not this prefix's to sweep.
    other = prefix.rsplit("/", 1)[0] + "/other"
    kill_mid_upload(wale, other, c, store)
    others = [x for x in leftovers(store, prefix) if x.startswith("other/")]
    assert others

    # Another tool's segments in the same container (python-swiftclient's naming) are never judged.
    foreign = []
    if store == "swift":
        container = prefix.split("/")[2]
        foreign = ["pg/other-tool/slo/1700000000.000000/10/10/00000000"]
        status, _ = swift_request("PUT", f"/{container}_segments/{foreign[0]}", data=b"0123456789")
        assert status == 201, status
    # Young: kept (it may be an upload still running elsewhere).
    r = wale("delete", "--confirm", "retain", "1", prefix=prefix, user=None)
    assert r.returncode == 0, r.stderr.decode()
    assert set(left) <= set(leftovers(store, prefix))
    # Old enough: removed by delete --confirm, and nothing else with it.
    r = wale("delete", "--confirm", "retain", "1", prefix=prefix, user=None, env={"WALE_ABANDONED_UPLOAD_AGE": "0"})
    assert r.returncode == 0, r.stderr.decode()
    assert b"abandoned uploads" in r.stderr, r.stderr.decode()
    now = leftovers(store, prefix)
    assert not set(left) & set(now), now
    assert set(others) <= set(now)
    assert set(complete) <= set(now)
    assert set(foreign) <= set(now)
    # The complete backup still restores, byte for byte.
    target = os.path.join(scratch, "restored")
    r = wale("backup-fetch", target, name, prefix=prefix, user=None)
    assert r.returncode == 0, r.stderr.decode()
    with open(os.path.join(target, "base", "random.bin"), "rb") as a, open(os.path.join(c.data, "base", "random.bin"), "rb") as b:
        assert a.read() == b.read()
    # A dry run never sweeps; a malformed age is a configuration error before anything is done.
    r = wale("delete", "everything", prefix=other, user=None, env={"WALE_ABANDONED_UPLOAD_AGE": "0"})
    assert r.returncode == 0 and set(others) <= set(leftovers(store, prefix))
    r = wale("delete", "--confirm", "everything", prefix=other, user=None, env={"WALE_ABANDONED_UPLOAD_AGE": "soon"})
    assert r.returncode == 1 and b"WALE_ABANDONED_UPLOAD_AGE" in r.stderr, r.stderr.decode()
    assert set(others) <= set(leftovers(store, prefix))


def test_backup_push_sweeps_before_it_starts(make_cluster, wale, s3_prefix, scratch):
    c = stopped_cluster(make_cluster)
    kill_mid_upload(wale, s3_prefix, c, "s3")
    r = wale("backup-push", "--while-offline", c.data, prefix=s3_prefix,
             env={"PATH": c.bindir + ":" + os.environ["PATH"], "WALE_ABANDONED_UPLOAD_AGE": "0"})
    assert r.returncode == 0, r.stderr.decode()
    assert b"abandoned uploads" in r.stderr
    assert leftovers("s3", s3_prefix) == []
