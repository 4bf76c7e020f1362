"""S3 credentials (instance profile over IMDSv2, shared credentials file), TLS with a CA bundle,
virtual-host addressing, overwrite decisions from object metadata, and resets mid-multipart, all
against SeaweedFS on 127.0.0.1 (scripts/test.sh starts it)."""
import os
import subprocess
import sys
import time

from harness import s3_create_bucket, sha256_file, store_env
from test_bad_input import make_segment
from test_s3 import segment_file, start_proxy

HERE = os.path.dirname(__file__)
NO_KEYS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}


def start_imds(scratch, ttl, pairs):
    log = os.path.join(scratch, f"imds-{time.time_ns()}.log")
    open(log, "w").close()
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "imds.py"), str(ttl), log] + [f"{a}:{s}" for a, s in pairs],
                         stdout=subprocess.PIPE)
    return p, int(p.stdout.readline()), log


def keys(n=1):
    pairs = [(os.environ["WALE_TEST_S3_ACCESS_KEY"], os.environ["WALE_TEST_S3_SECRET_KEY"]),
             (os.environ["WALE_TEST_S3_ACCESS_KEY2"], os.environ["WALE_TEST_S3_SECRET_KEY2"])]
    return pairs[:n]


def fetches(log):
    return [line.split() for line in open(log).read().splitlines()]


def err(p):
    return p.stderr.decode(errors="replace")


def test_instance_profile_fetches_keys_once_per_process_when_they_last(wale, s3_prefix, scratch):
    imds, port, log = start_imds(scratch, 3600, keys(1))
    try:
        env = dict(NO_KEYS, AWS_INSTANCE_PROFILE="true", AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{port}")
        src = segment_file(scratch)
        p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
        assert p.returncode == 0, err(p)
        # Four requests (three HEADs for the codecs, one PUT) signed with one fetch of the keys.
        assert len(fetches(log)) == 1
        dest = os.path.join(scratch, "back")
        f = wale("--aws-instance-profile", "wal-fetch", "-p", "0", os.path.basename(src), dest, prefix=s3_prefix,
                 env=dict(NO_KEYS, AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{port}"), user=None)
        assert f.returncode == 0, err(f)
        assert sha256_file(dest) == sha256_file(src)
        assert len(fetches(log)) == 2
    finally:
        imds.kill()


def test_instance_profile_refreshes_keys_before_they_expire(wale, s3_prefix, scratch):
    # Keys that expire within the five-minute refresh margin are fetched again before each use;
    # the service hands out the two identities in turn and every request must still succeed.
    imds, port, log = start_imds(scratch, 300, keys(2))
    try:
        env = dict(NO_KEYS, AWS_INSTANCE_PROFILE="1", AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{port}")
        src = segment_file(scratch)
        p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
        assert p.returncode == 0, err(p)
        got = fetches(log)
        assert len(got) >= 2, got
        assert {g[2] for g in got} == {k for k, _ in keys(2)}
        dest = os.path.join(scratch, "back")
        assert wale("wal-fetch", "-p", "0", os.path.basename(src), dest, prefix=s3_prefix, env=env, user=None).returncode == 0
        assert sha256_file(dest) == sha256_file(src)
    finally:
        imds.kill()


def test_instance_profile_errors_are_clear_and_bounded(wale, s3_prefix, scratch):
    closed = {"AWS_INSTANCE_PROFILE": "true", "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9", "WALE_RETRIES": "2"}
    t0 = time.time()
    p = wale("backup-list", prefix=s3_prefix, env=dict(NO_KEYS, **closed), user=None, timeout=60)
    assert p.returncode == 74 and time.time() - t0 < 20
    assert "instance metadata service at http://127.0.0.1:9 did not answer" in err(p)
    both = wale("-k", "AKIAX", "--aws-instance-profile", "backup-list", prefix=s3_prefix, user=None)
    assert both.returncode == 2 and "cannot be used together" in err(both)
    bad = wale("backup-list", prefix=s3_prefix, env={"AWS_INSTANCE_PROFILE": "maybe"}, user=None)
    assert bad.returncode == 2 and "AWS_INSTANCE_PROFILE=maybe is not a boolean" in err(bad)


def test_shared_credentials_file_and_profile(wale, s3_prefix, scratch):
    home = os.path.join(scratch, "home")
    os.makedirs(os.path.join(home, ".aws"))
    (ak, sk), (ak2, sk2) = keys(2)
    with open(os.path.join(home, ".aws", "credentials"), "w") as f:
        f.write(f"[default]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = nope\n\n"
                f"# the archive's keys\n[archiver]\naws_access_key_id = {ak2}\naws_secret_access_key = {sk2}\n")
    src = segment_file(scratch)
    env = dict(NO_KEYS, HOME=home, AWS_PROFILE="archiver")
    p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
    assert p.returncode == 0, err(p)
    # The default profile's keys are wrong: without AWS_PROFILE the request is refused, clearly.
    d = wale("backup-list", prefix=s3_prefix, env=dict(NO_KEYS, HOME=home), user=None)
    assert d.returncode == 1 and "AWS_ACCESS_KEY_ID is not known" in err(d) and "nope" not in err(d)
    # AWS_SHARED_CREDENTIALS_FILE moves the file; environment keys win over any file.
    moved = os.path.join(scratch, "creds.ini")
    os.rename(os.path.join(home, ".aws", "credentials"), moved)
    dest = os.path.join(scratch, "back")
    f = wale("wal-fetch", "-p", "0", os.path.basename(src), dest, prefix=s3_prefix,
             env=dict(NO_KEYS, HOME=home, AWS_PROFILE="archiver", AWS_SHARED_CREDENTIALS_FILE=moved), user=None)
    assert f.returncode == 0, err(f)
    assert sha256_file(dest) == sha256_file(src)
    assert wale("backup-list", prefix=s3_prefix, env={"HOME": home, "AWS_SHARED_CREDENTIALS_FILE": moved}, user=None).returncode == 0
    missing = wale("backup-list", prefix=s3_prefix, env=dict(NO_KEYS, HOME=home, AWS_PROFILE="nobody",
                                                             AWS_SHARED_CREDENTIALS_FILE=moved), user=None)
    assert missing.returncode == 1 and 'the AWS profile "nobody" has no keys' in err(missing)


def test_https_endpoint_verifies_against_the_ca_bundle(wale, s3_prefix, scratch):
    https = {"WALE_S3_ENDPOINT": os.environ["WALE_TEST_S3_HTTPS_ENDPOINT"]}
    t0 = time.time()
    untrusted = wale("backup-list", prefix=s3_prefix, env=https, user=None, timeout=60)
    assert untrusted.returncode == 1 and time.time() - t0 < 20, err(untrusted)
    assert "TLS verification" in err(untrusted) and "WALE_S3_CA_BUNDLE" in err(untrusted)
    src = segment_file(scratch)
    trusted = dict(https, WALE_S3_CA_BUNDLE=os.environ["WALE_TEST_S3_CA"])
    p = wale("wal-push", src, prefix=s3_prefix, env=trusted, user=None)
    assert p.returncode == 0, err(p)
    dest = os.path.join(scratch, "back")
    f = wale("wal-fetch", "-p", "0", os.path.basename(src), dest, prefix=s3_prefix,
             env=dict(https, AWS_CA_BUNDLE=os.environ["WALE_TEST_S3_CA"]), user=None)
    assert f.returncode == 0, err(f)
    assert sha256_file(dest) == sha256_file(src)
    nofile = wale("backup-list", prefix=s3_prefix, env=dict(https, WALE_S3_CA_BUNDLE="/nonexistent/ca.pem"), user=None)
    assert nofile.returncode == 1 and "the CA bundle /nonexistent/ca.pem cannot be read" in err(nofile)


def test_virtual_host_addressing(wale, scratch):
    bucket = os.environ["WALE_TEST_S3_VHOST_BUCKET"]
    s3_create_bucket(bucket, exist_ok=True)  # one fixed name: it must resolve (/etc/hosts)
    prefix = f"s3://{bucket}/vhost-{os.getpid()}-{time.time_ns()}"
    os.environ["FAULTPROXY_LOG"] = log = os.path.join(scratch, "proxy.log")
    try:
        proxy, port = start_proxy("pass")
    finally:
        del os.environ["FAULTPROXY_LOG"]
    try:
        src = segment_file(scratch)
        p = wale("wal-push", src, prefix=prefix, env={"WALE_S3_ENDPOINT": f"http+virtualhost://localhost:{port}"}, user=None)
        assert p.returncode == 0, err(p)
    finally:
        proxy.kill()
    lines = open(log).read().splitlines()
    puts = [line for line in lines if line.startswith("PUT ")]
    # The bucket is in the host name, not in the path.
    assert puts and all(line.startswith(f"PUT /{prefix.split('/', 3)[3]}/wal_005/") for line in puts), lines
    # Path-style access to the same server sees the same object.
    dest = os.path.join(scratch, "back")
    f = wale("wal-fetch", "-p", "0", os.path.basename(src), dest, prefix=prefix, user=None)
    assert f.returncode == 0, err(f)
    assert sha256_file(dest) == sha256_file(src)


def logged_proxy(scratch, mode="pass", count=0):
    log = os.path.join(scratch, f"proxy-{time.time_ns()}.log")
    os.environ["FAULTPROXY_LOG"] = log
    try:
        proxy, port = start_proxy(mode, count)
    finally:
        del os.environ["FAULTPROXY_LOG"]
    return proxy, {"WALE_S3_ENDPOINT": f"http+path://127.0.0.1:{port}"}, log


def test_overwrite_is_decided_from_metadata_without_a_download(wale, s3_prefix, scratch):
    name = "000000010000000000000007"
    src = segment_file(scratch, name)
    proxy, env, log = logged_proxy(scratch)
    try:
        assert wale("wal-push", src, prefix=s3_prefix, env=env, user=None).returncode == 0
        same = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
        assert same.returncode == 0 and "already archived with identical content" in err(same)
        other = os.path.join(scratch, "other", name)
        os.makedirs(os.path.dirname(other))
        make_segment(other, name=name)  # same name, different random page
        diff = wale("wal-push", other, prefix=s3_prefix, env=env, user=None)
        assert diff.returncode == 3 and "refusing to overwrite" in err(diff)
    finally:
        proxy.kill()
    methods = [line.split()[0] for line in open(log).read().splitlines()]
    assert methods.count("PUT") == 1 and "GET" not in methods, methods
    # The archived object still holds the first content.
    dest = os.path.join(scratch, "back")
    assert wale("wal-fetch", "-p", "0", name, dest, prefix=s3_prefix, user=None).returncode == 0
    assert sha256_file(dest) == sha256_file(src)


def test_object_without_metadata_is_compared_by_download(wale, s3_prefix, scratch):
    # WAL-E 1.1 wrote no digest: the decision falls back to reading the object.
    name = "000000010000000000000008"
    src = segment_file(scratch, name)
    subprocess.run(["lzop", "-q", "-f", "-o", src + ".lzo", src], check=True)
    bucket, path = s3_prefix[len("s3://"):].split("/", 1)
    e = os.environ
    put = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-T", src + ".lzo", "--aws-sigv4", "aws:amz:us-east-1:s3",
                          "--user", f"{e['WALE_TEST_S3_ACCESS_KEY']}:{e['WALE_TEST_S3_SECRET_KEY']}",
                          f"{e['WALE_TEST_S3_URL']}/{bucket}/{path}/wal_005/{name}.lzo"], capture_output=True)
    assert put.stdout == b"200"
    proxy, env, log = logged_proxy(scratch)
    try:
        same = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
        assert same.returncode == 0 and "identical content" in err(same)
        other = os.path.join(scratch, "other", name)
        os.makedirs(os.path.dirname(other))
        make_segment(other, name=name)
        assert wale("wal-push", other, prefix=s3_prefix, env=env, user=None).returncode == 3
    finally:
        proxy.kill()
    methods = [line.split()[0] for line in open(log).read().splitlines()]
    assert "PUT" not in methods and methods.count("GET") == 2, methods


def big_segment(scratch, name="000000010000000000000001"):
    """A 64 MiB WAL segment of random bytes: lzop cannot shrink it, so it goes up in multipart."""
    path = os.path.join(scratch, "big", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    make_segment(path, name=name, seg_size=64 << 20)
    with open(path, "r+b") as f:
        f.seek(8192)
        f.write(os.urandom((64 << 20) - 8192))
    return path


def pending_uploads(s3_prefix):
    bucket = s3_prefix[len("s3://"):].split("/", 1)[0]
    e = os.environ
    r = subprocess.run(["curl", "-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                        f"{e['WALE_TEST_S3_ACCESS_KEY']}:{e['WALE_TEST_S3_SECRET_KEY']}", f"{e['WALE_TEST_S3_URL']}/{bucket}?uploads="],
                       capture_output=True)
    assert b"ListMultipartUploadsResult" in r.stdout, r.stdout
    return r.stdout.count(b"<Upload>")


def test_connection_reset_mid_multipart_upload(wale, s3_prefix, scratch):
    src = big_segment(scratch)
    proxy, env, log = logged_proxy(scratch, "reset-part", 2)
    try:
        p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
        assert p.returncode == 0, err(p)
        assert "retrying UploadPart" in err(p)
    finally:
        proxy.kill()
    assert sum("partNumber=" in line for line in open(log).read().splitlines()) >= 5 + 2
    dest = os.path.join(scratch, "back")
    f = wale("wal-fetch", "-p", "0", os.path.basename(src), dest, prefix=s3_prefix, user=None)
    assert f.returncode == 0, err(f)
    assert sha256_file(dest) == sha256_file(src)
    assert pending_uploads(s3_prefix) == 0

    # Every attempt reset: a bounded failure, no object, and the upload aborted.
    src2 = big_segment(scratch, "000000010000000000000002")
    proxy, env, log = logged_proxy(scratch, "reset-part", 1000)
    try:
        t0 = time.time()
        p = wale("wal-push", src2, prefix=s3_prefix, env=dict(env, WALE_RETRIES="2"), user=None, timeout=120)
        assert p.returncode == 74 and time.time() - t0 < 60, err(p)
    finally:
        proxy.kill()
    missing = wale("wal-fetch", "-p", "0", os.path.basename(src2), os.path.join(scratch, "never"), prefix=s3_prefix, user=None)
    assert missing.returncode == 1 and not os.path.exists(os.path.join(scratch, "never"))
    assert pending_uploads(s3_prefix) == 0


def test_parallel_multipart_uploads_share_a_small_memory_budget(wale, s3_prefix, scratch):
    # Four 64 MiB incompressible segments pushed at once (wal-push's pool), each a multipart upload,
    # all through a budget smaller than two parts: they must queue for memory, never deadlock.
    names = [f"0000000100000000000000{n:02X}" for n in range(4, 8)]
    paths = [big_segment(scratch, n) for n in names]
    status = os.path.join(scratch, "big", "archive_status")
    os.makedirs(status, exist_ok=True)
    for n in names[1:]:
        open(os.path.join(status, n + ".ready"), "w").close()
    t0 = time.time()
    p = wale("wal-push", "--pool-size", "4", paths[0], prefix=s3_prefix, env={"WALE_S3_UPLOAD_MEMORY_MIB": "8"}, user=None,
             timeout=180)
    assert p.returncode == 0, err(p)
    assert time.time() - t0 < 150
    # The neighbours are archived ahead; archive_status stays PostgreSQL's (wal-push records them
    # in pg_wal/.wal-e/pushed so PostgreSQL's own call for each succeeds at once and is counted).
    assert sorted(os.listdir(status)) == sorted(n + ".ready" for n in names[1:])
    assert sorted(os.listdir(os.path.join(scratch, "big", ".wal-e", "pushed"))) == sorted(names[1:])
    for n, path in zip(names, paths):
        dest = os.path.join(scratch, "back-" + n)
        assert wale("wal-fetch", "-p", "0", n, dest, prefix=s3_prefix, user=None).returncode == 0
        assert sha256_file(dest) == sha256_file(path)
    assert pending_uploads(s3_prefix) == 0


def test_a_pool_of_incompressible_segments_goes_up_at_once_within_the_memory_budget(wale, s3_prefix, scratch):
    """Eight 16 MiB segments of random bytes (lzop cannot shrink them: the most a WAL file can need)
    pushed by one pool under the default 16 MiB of upload memory. Each body is spooled to an
    unnamed file in the WAL directory instead of memory, so several PUTs are with the server at
    once (held in memory they went one at a time), peak RSS stays under 64 MiB, nothing is left in
    the directory, and every segment comes back byte for byte."""
    from test_codecs_and_prefetch import peak_rss_kib
    wal = os.path.join(scratch, "pool-wal")
    os.makedirs(os.path.join(wal, "archive_status"))
    names = [f"0000000100000000000000{n:02X}" for n in range(0x30, 0x38)]
    for n in names:
        make_segment(os.path.join(wal, n), name=n)
        with open(os.path.join(wal, n), "r+b") as f:
            f.seek(8192)
            f.write(os.urandom((16 << 20) - 8192))
    for n in names[1:]:
        open(os.path.join(wal, "archive_status", n + ".ready"), "w").close()
    counted = os.path.join(scratch, "inflight")
    os.environ["FAULTPROXY_INFLIGHT"] = counted
    try:
        proxy, port = start_proxy("pass")
    finally:
        del os.environ["FAULTPROXY_INFLIGHT"]
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WALE_")}
        env.update(store_env(s3_prefix), WALE_S3_PREFIX=s3_prefix, WALE_LOG_DESTINATION="stderr",
                   WALE_S3_ENDPOINT=f"http+path://127.0.0.1:{port}")
        rss = peak_rss_kib([wale.path, "wal-push", "--pool-size", "8", os.path.join(wal, names[0])], env)
    finally:
        proxy.kill()
    assert int(open(counted).read()) >= 2
    assert rss < 64 * 1024, rss
    assert sorted(os.listdir(wal)) == sorted(names + ["archive_status", ".wal-e"])
    for n in names:
        dest = os.path.join(scratch, "back-" + n)
        assert wale("wal-fetch", "-p", "0", n, dest, prefix=s3_prefix, user=None).returncode == 0
        assert sha256_file(dest) == sha256_file(os.path.join(wal, n))


def test_a_spool_the_disk_cannot_take_falls_back_to_memory(wale, s3_prefix, scratch):
    """The disk refuses the spool mid-way (a file-size limit of 4 MiB, as a full disk would at any
    byte): the push starts again from the segment in memory, the object is exact, and nothing is
    left in the WAL directory. The unlimited push of the same kind of segment spools (the test
    above); with this limit a spool cannot hold its ~16 MiB body (under strace: the O_TMPFILE spool
    opened, its pwrite at 4 MiB failing with EFBIG, then the push completing)."""
    import resource
    import signal
    wal = os.path.join(scratch, "limited-wal")
    os.makedirs(os.path.join(wal, "archive_status"))
    name = "000000010000000000000040"
    path = os.path.join(wal, name)
    make_segment(path, name=name)
    with open(path, "r+b") as f:
        f.seek(8192)
        f.write(os.urandom((16 << 20) - 8192))

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    env = {k: v for k, v in os.environ.items() if not k.startswith("WALE_")}
    env.update(store_env(s3_prefix), WALE_S3_PREFIX=s3_prefix, WALE_LOG_DESTINATION="stderr")
    p = subprocess.run([wale.path, "wal-push", path], env=env, capture_output=True, timeout=180, preexec_fn=limited)
    assert p.returncode == 0, p.stderr.decode()
    assert sorted(os.listdir(wal)) == sorted([name, "archive_status"]), os.listdir(wal)
    dest = os.path.join(scratch, "back-" + name)
    assert wale("wal-fetch", "-p", "0", name, dest, prefix=s3_prefix, user=None).returncode == 0
    assert sha256_file(dest) == sha256_file(path)


def test_expired_session_token(wale, s3_prefix, scratch):
    """S3 says ExpiredToken. Keys from the instance metadata service are fetched again and the
    request succeeds; a session token given in the environment cannot renew itself: a credentials
    error at once (no retries), fatal for PostgreSQL's recovery (129), named with its fix."""
    src = segment_file(scratch)
    assert wale("wal-push", src, prefix=s3_prefix, user=None).returncode == 0
    seg = os.path.basename(src)
    imds, port, log = start_imds(scratch, 3600, keys(1))
    try:
        # wal-fetch: its GET's answer says expired: keys fetched again (twice in the process).
        # wal-push: its HEADs' answers (no body, no code; the codecs' names are asked at once),
        # then the one-byte GET that asks why: a refused HEAD is not the end of the push.
        for args, expired, fetched in ((("wal-fetch", "-p", "0", seg, os.path.join(scratch, "back")), 1, 2), (("wal-push", src), 4, None)):
            proxy, env, _ = logged_proxy(scratch, "expired-token", expired)
            try:
                env.update(NO_KEYS, AWS_INSTANCE_PROFILE="true", AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{port}")
                f = wale(*args, prefix=s3_prefix, env=env, user=None)
                assert f.returncode == 0, err(f)
                assert fetched is None or len(fetches(log)) == fetched, (fetches(log), err(f))
            finally:
                proxy.kill()
        assert sha256_file(os.path.join(scratch, "back")) == sha256_file(src)
    finally:
        imds.kill()
    proxy, env, _ = logged_proxy(scratch, "expired-token", 1000)
    try:
        env["AWS_SESSION_TOKEN"] = "FwoGZXIvYXdzEXPIRED"
        t0 = time.time()
        f = wale("wal-fetch", "-p", "0", seg, os.path.join(scratch, "never"), prefix=s3_prefix, env=env, user=None)
        assert f.returncode == 129, err(f)
        assert "session token has expired" in err(f) and "FwoGZXIvYXdzEXPIRED" not in err(f)
        assert time.time() - t0 < 20
        assert not os.path.exists(os.path.join(scratch, "never"))
        p = wale("wal-push", src, prefix=s3_prefix, env=env, user=None)
        assert p.returncode == 1 and "session token has expired" in err(p), err(p)
    finally:
        proxy.kill()
