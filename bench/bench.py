#!/usr/bin/python3
"""Side-by-side benchmark: wal-e (release build) vs pgBackRest (Debian) vs WAL-E 1.1.1 (PyPI).

Run through bench/run.sh (it installs and starts everything). One PostgreSQL 15 cluster holds
pgbench data (very compressible) and a table of random bytes (incompressible) of similar size;
every tool backs it up to a file/posix repository and to S3 (SeaweedFS on 127.0.0.1) and restores
it, pushes single WAL segments, drains an archive backlog through archive_command and feeds an
archive recovery of at least 1 GiB of WAL through restore_command. Results (each figure and the
ratio wal-e / peer) go to bench/results/.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.environ.get("BENCH_ROOT", "/var/tmp/wale-bench")
PGBIN = "/usr/lib/postgresql/15/bin"
SCALE = int(os.environ.get("BENCH_SCALE", "50"))
RANDOM_MB = int(os.environ.get("BENCH_RANDOM_MB", "0")) or SCALE * 13  # about pgbench's size
REPLAY_GIB = float(os.environ.get("BENCH_REPLAY_GIB", "1.0"))
PUSH_RUNS = int(os.environ.get("BENCH_PUSH_RUNS", "11"))
WALE_PY = os.environ.get("BENCH_WALE_PY", "/opt/wal-e-test/wale-venv/bin/wal-e")
S3_PORT = int(os.environ["WALE_TEST_S3_ENDPOINT"].rsplit(":", 1)[1])
S3_KEY, S3_SECRET = os.environ["WALE_TEST_S3_ACCESS_KEY"], os.environ["WALE_TEST_S3_SECRET_KEY"]
S3_CA = os.environ["WALE_TEST_S3_CA"]
SEG = 16 << 20
MAIN_PORT, BACKLOG_PORT, RESTORE_PORT = 5611, 5612, 5613
ROWS = []  # (section, tool, figure dict)
LOG = open(os.path.join(ROOT, "bench.log"), "a") if os.path.isdir(ROOT) else None


def say(msg):
    print(f">> {msg}", file=sys.stderr, flush=True)


def run(cmd, user="postgres", env=None, check=True, timeout=3600, quiet=True):
    """Runs cmd (a list) as `user` with exactly `env` (plus PATH/HOME); returns CompletedProcess."""
    e = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/var/lib/postgresql", "LANG": "C.UTF-8", "TMPDIR": ROOT + "/tmp"}
    e.update(env or {})
    full = (["runuser", "-u", user, "--"] if user else []) + ["env", "-i"] + [f"{k}={v}" for k, v in e.items()] + list(cmd)
    p = subprocess.run(full, capture_output=True, timeout=timeout)
    if LOG:
        LOG.write(f"$ {' '.join(cmd)}\n{p.stdout.decode(errors='replace')[-4000:]}{p.stderr.decode(errors='replace')[-4000:]}\n")
        LOG.flush()
    if check and p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.decode(errors='replace')[-3000:]}")
    return p


def timed(cmd, env=None, user="postgres", check=True):
    """Wall (monotonic), CPU user+sys and peak RSS (largest single process, as /usr/bin/time
    reports it) of cmd, run directly as `user` with exactly `env` (plus PATH/HOME): no runuser
    or time(1) process in between, whose start-up (~8 ms) would be counted for every tool."""
    e = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/var/lib/postgresql", "LANG": "C.UTF-8", "TMPDIR": ROOT + "/tmp"}
    e.update(env or {})
    ids = {"user": user, "group": user, "extra_groups": []} if user else {}
    t0 = time.monotonic()
    p = subprocess.Popen(list(cmd), env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **ids)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if LOG:
        LOG.write(f"$ {' '.join(cmd)}\n{err.decode(errors='replace')[-4000:]}\n")
        LOG.flush()
    if check and p.returncode != 0:
        raise SystemExit(f"timed command failed ({p.returncode}): {' '.join(cmd)}\n{err.decode(errors='replace')[-3000:]}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mib": ru.ru_maxrss / 1024, "rc": p.returncode}


def drop_caches():
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def psql(port, sql, db="postgres"):
    return run([f"{PGBIN}/psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(port), "-d", db, "-c", sql]).stdout.decode().strip()


def du(path, exclude=None):
    cmd = ["du", "-sb"] + ([f"--exclude={exclude}"] if exclude else []) + [path]
    return int(subprocess.run(cmd, capture_output=True, check=True).stdout.split()[0])


def pg_start(data, port, wait=True):
    run([f"{PGBIN}/pg_ctl", "-D", data, "-o", f"-p {port}", "-l", data + ".log", "-t", "3600"] + (["-w"] if wait else ["-W"]) + ["start"])


def pg_stop(data, mode="fast"):
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        run([f"{PGBIN}/pg_ctl", "-D", data, "-m", mode, "-w", "-t", "600", "stop"], check=False)


def mkdir_pg(path):
    os.makedirs(path, exist_ok=True)
    shutil.chown(path, "postgres", "postgres")
    os.chmod(path, 0o700)


def fresh_dir(path):
    if os.path.exists(path):
        shutil.rmtree(path)
    mkdir_pg(path)


# ---------------------------------------------------------------- the tools' environments

def s3_url():
    return f"http://127.0.0.1:{S3_PORT}"


PORTS = {"main": MAIN_PORT, "backlog": BACKLOG_PORT, "push": MAIN_PORT, "push-enc": MAIN_PORT}


def enc_keys():
    """A native encryption key pair (wal-e key generate), made once per run."""
    priv, pub = f"{ROOT}/keys/wal-e.key", f"{ROOT}/keys/wal-e.pub"
    if not os.path.exists(pub):
        mkdir_pg(f"{ROOT}/keys")
        run(wale_cmd("key", "generate", priv, pub))
    return {"WALE_ENCRYPTION_PUBLIC_KEYS": pub}, {"WALE_ENCRYPTION_PRIVATE_KEYS": priv}


GPG_PARAMS = """%no-protection
Key-Type: eddsa
Key-Curve: ed25519
Subkey-Type: ecdh
Subkey-Curve: cv25519
Name-Real: wal-e bench
Name-Email: bench@wal-e.invalid
Expire-Date: 0
%commit
"""


def gpg_env():
    """A gpg keyring (one key, no passphrase) for WAL-E's encryption, made once per run."""
    home = f"{ROOT}/gnupg"
    if not os.path.exists(home):
        mkdir_pg(home)
        os.chmod(home, 0o700)
        with open(f"{ROOT}/gpg.params", "w") as f:
            f.write(GPG_PARAMS)
        run(["gpg", "--batch", "--gen-key", f"{ROOT}/gpg.params"], env={"GNUPGHOME": home})
    return {"GNUPGHOME": home, "WALE_GPG_KEY_ID": "bench@wal-e.invalid"}


def newest_wale_backup(store):
    listed = json.loads(run(wale_cmd("backup-list", "--json"), env=wale_env(store)).stdout)
    return max(b["name"] for b in listed)


def tool_env(store, cluster, name, bucket, s3):
    """Environment of a WAL-E-compatible tool: its own file directory / bucket, `s3` its S3 settings."""
    e = {"WALE_LOG_DESTINATION": "stderr", "PGHOST": "127.0.0.1", "PGUSER": "postgres", "PGPORT": str(PORTS[cluster])}
    if store == "file":
        e["WALE_FILE_PREFIX"] = f"file://localhost{ROOT}/store/{name}-{cluster}"
    else:
        e.update({"WALE_S3_PREFIX": f"s3://{bucket}/{cluster}", "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET, **s3})
    return e


def wale_env(store, cluster="main"):
    # https like pgBackRest (which requires TLS), verified against the server's CA; pgBackRest asks
    # for no server-side encryption by default: the server does the same work for both
    return tool_env(store, cluster, "wal-e", "bench-wal-e", {
        "WALE_S3_ENDPOINT": f"https+path://127.0.0.1:{S3_PORT + 8}", "WALE_S3_CA_BUNDLE": S3_CA, "WALE_S3_SSE": "none"})


def walepy_env(store, cluster="main"):
    # WAL-E over http: its boto cannot be pointed at a private CA from the environment
    return tool_env(store, cluster, "WAL-E", "bench-wal-e-py", {"WALE_S3_ENDPOINT": f"http+path://127.0.0.1:{S3_PORT}"})


def pgbr_conf(store, cluster="main", port=MAIN_PORT, data=None):
    """Writes a pgBackRest config for a repository; returns its path."""
    path = f"{ROOT}/pgbackrest-{store}-{cluster}.conf"
    repo = (f"repo1-type=posix\nrepo1-path={ROOT}/store/pgbackrest-{cluster}\n" if store == "file" else
            f"repo1-type=s3\nrepo1-path=/{cluster}\nrepo1-s3-bucket=bench-pgbackrest\nrepo1-s3-endpoint=127.0.0.1\n"
            f"repo1-storage-port={S3_PORT + 8}\nrepo1-s3-region=us-east-1\nrepo1-s3-key={S3_KEY}\n"
            f"repo1-s3-key-secret={S3_SECRET}\nrepo1-s3-uri-style=path\nrepo1-storage-verify-tls=n\n")
    with open(path, "w") as f:
        f.write(f"[global]\n{repo}repo1-retention-full=99\nlog-level-console=warn\nlog-level-file=off\n"
                f"lock-path={ROOT}/run\nspool-path={ROOT}/spool-{cluster}\nstart-fast=y\nprocess-max=2\ncompress-type=lz4\n"
                f"archive-async=n\n\n[{cluster}]\npg1-path={data or ROOT + '/' + cluster}\npg1-port={port}\n"
                f"pg1-socket-path=/var/run/postgresql\n")
    shutil.chown(path, "postgres", "postgres")
    for d in (f"{ROOT}/run", f"{ROOT}/spool-{cluster}"):
        mkdir_pg(d)
    return path


def wale_cmd(*args):
    return [f"{ROOT}/bin/wal-e", *args]


def walepy_cmd(*args):
    return [WALE_PY, *args]


def pgbr_cmd(conf, cluster, *args):
    return ["pgbackrest", f"--config={conf}", f"--stanza={cluster}", *args]


def env_line(e):
    return " ".join(f"{k}={v}" for k, v in sorted(e.items()))


# ---------------------------------------------------------------- S3 helpers (curl, SigV4)

def s3_curl(*args):
    return subprocess.run(["curl", "-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{S3_KEY}:{S3_SECRET}", *args],
                          capture_output=True, check=True).stdout


def s3_make_bucket(name):
    s3_curl("-X", "PUT", f"{s3_url()}/{name}")


def s3_size(bucket, prefix):
    total, token = 0, None
    while True:
        from urllib.parse import quote
        url = f"{s3_url()}/{bucket}?list-type=2&prefix={quote(prefix, safe='')}" + (f"&continuation-token={quote(token, safe='')}" if token else "")
        body = s3_curl(url).decode()
        total += sum(int(x) for x in re.findall(r"<Size>(\d+)</Size>", body))
        m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
        if "<IsTruncated>true</IsTruncated>" not in body or not m:
            return total
        token = m.group(1)


# ---------------------------------------------------------------- clusters

def init_cluster(data, port, archive_command):
    fresh_dir(data)
    run([f"{PGBIN}/initdb", "-D", data, "-U", "postgres", "--auth=trust"])
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '/var/run/postgresql'\n"
                f"wal_level = replica\narchive_mode = on\narchive_command = '{archive_command}'\nmax_wal_size = 4GB\n"
                f"checkpoint_timeout = 1h\nshared_buffers = 256MB\nsynchronous_commit = off\nfull_page_writes = on\n")
    os.makedirs("/var/run/postgresql", exist_ok=True)
    shutil.chown("/var/run/postgresql", "postgres", "postgres")
    pg_start(data, port)


def set_archive_command(data, port, cmd):
    psql(port, f"ALTER SYSTEM SET archive_command = '{cmd}'")
    psql(port, "SELECT pg_reload_conf()")


def write_script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)


# ---------------------------------------------------------------- the measurements

def record(section, tool, **fig):
    ROWS.append((section, tool, fig))
    say(f"{section} | {tool} | " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in fig.items()))


def backups_and_restores(main, base_bytes):
    """backup-push and restore of the main cluster by each tool to each store."""
    targets = []
    for store in ("file", "s3"):
        # The encrypted wal-e backups first: the clear one after them is LATEST for the restore rows.
        if store == "file":
            targets.append(("wal-e gpg", store, None))  # gpg runs the same on every store: file only
        targets.append(("wal-e native encryption", store, None))
        targets.append(("wal-e", store, None))
        targets.append(("pgBackRest lz4", store, "lz4"))
        targets.append(("pgBackRest zst", store, "zst"))
        targets.append(("WAL-E 1.1.1", store, None))
    labels = {}
    wale_stored = {}  # store -> bytes of wal-e backups so far (each row counts its own)
    wale_names = {}
    enc_env = {"wal-e gpg": lambda: gpg_env(), "wal-e native encryption": lambda: enc_keys()[0], "wal-e": lambda: {}}
    for tool, store, codec in targets:
        psql(MAIN_PORT, "CHECKPOINT")
        drop_caches()
        if tool in enc_env:
            # Native encryption: only the public key on the database side, as in production.
            # --fast: an immediate checkpoint, as pgBackRest's start-fast=y below (a spread one
            # measures PostgreSQL's checkpoint pacing, up to 30 s in one run, not the tool).
            f = timed(wale_cmd("backup-push", "--fast", main), env={**wale_env(store), **enc_env[tool]()})
            total = du(f"{ROOT}/store/wal-e-main/basebackups_005") if store == "file" else s3_size("bench-wal-e", "main/basebackups_005")
            stored = total - wale_stored.get(store, 0)
            wale_stored[store] = total
            wale_names[(tool, store)] = newest_wale_backup(store)
        elif tool == "WAL-E 1.1.1":
            f = timed(walepy_cmd("backup-push", main), env=walepy_env(store))
            stored = du(f"{ROOT}/store/WAL-E-main/basebackups_005") if store == "file" else s3_size("bench-wal-e-py", "main/basebackups_005")
        else:
            conf = pgbr_conf(store)
            f = timed(pgbr_cmd(conf, "main", "backup", "--type=full", f"--compress-type={codec}"))
            info = json.loads(run(pgbr_cmd(conf, "main", "info", "--output=json")).stdout)
            last = info[0]["backup"][-1]
            labels[(store, codec)] = last["label"]
            stored = last["info"]["repository"]["delta"]
        record(f"backup-push ({store})", tool, wall=f["wall"], mbs=base_bytes / 1e6 / f["wall"], cpu=f["cpu"], rss_mib=f["rss_mib"],
               stored_mb=stored / 1e6)
    # Floor: only reading the cluster (cold cache, two readers, output discarded).
    drop_caches()
    f = timed(["sh", "-c", f"find {main} -path {main}/pg_wal -prune -o -type f -print0 | xargs -0 -P 2 -n 64 cat > /dev/null"])
    record("backup-push (file)", "floor: read the cluster only", wall=f["wall"], mbs=base_bytes / 1e6 / f["wall"], cpu=f["cpu"],
           rss_mib=f["rss_mib"])
    # verify reads what backup-fetch reads and writes nothing: it must be at least as fast, in the
    # same memory (its speed-up cell is backup-fetch's time over verify's: below 1, verify is faster).
    # Measured before the restores, not after the last one (and its 1.5 GB deleted): there it took
    # 0.90-1.01 s in two runs, where three cold-cache runs apart, each after the same rm, sync and
    # drop_caches, took 0.39-0.69 s against backup-fetch's 0.83-0.89 s; why is not known.
    for store in ("file", "s3"):
        drop_caches()
        f = timed(wale_cmd("verify", "LATEST"), env=wale_env(store))
        record(f"backup-fetch / restore ({store})", "wal-e verify (checks every object, writes nothing)", wall=f["wall"],
               mbs=base_bytes / 1e6 / f["wall"], cpu=f["cpu"], rss_mib=f["rss_mib"])
    for tool, store, codec in targets:
        target = f"{ROOT}/restore"
        fresh_dir(target)
        drop_caches()
        if tool in enc_env:
            keys = {"wal-e gpg": lambda: {"GNUPGHOME": gpg_env()["GNUPGHOME"]}, "wal-e native encryption": lambda: enc_keys()[1],
                    "wal-e": lambda: {}}[tool]()
            f = timed(wale_cmd("backup-fetch", target, wale_names[(tool, store)]), env={**wale_env(store), **keys})
        elif tool == "WAL-E 1.1.1":
            f = timed(walepy_cmd("backup-fetch", target, "LATEST"), env=walepy_env(store))
        else:
            conf = pgbr_conf(store)
            f = timed(pgbr_cmd(conf, "main", "restore", f"--pg1-path={target}", f"--set={labels[(store, codec)]}", "--type=none"))
        restored = du(target, exclude="pg_wal")
        record(f"backup-fetch / restore ({store})", tool, wall=f["wall"], mbs=base_bytes / 1e6 / f["wall"], cpu=f["cpu"],
               rss_mib=f["rss_mib"], restored_mb=restored / 1e6)
    shutil.rmtree(f"{ROOT}/restore", ignore_errors=True)


def single_pushes(walsrc):
    """wal-push of one 16 MiB segment (a real one from the data load), a fresh name each run."""
    segs = sorted(s for s in os.listdir(walsrc) if re.fullmatch(r"[0-9A-F]{24}", s))
    assert len(segs) >= PUSH_RUNS + 2, f"only {len(segs)} segments in {walsrc}"
    # The same real segments for every tool (each has its own repository), from the middle of the load.
    names = segs[len(segs) // 2: len(segs) // 2 + PUSH_RUNS]
    for store in ("file", "s3"):
        for tool in ("wal-e", "wal-e native encryption", "pgBackRest lz4", "WAL-E 1.1.1"):
            walls, rss = [], []
            for name in names:
                # a copy outside pg_wal, so no .ready neighbours come into it
                src = f"{ROOT}/pushsrc/{name}"
                # archive_command pushes a segment PostgreSQL has just written: in the page cache
                with open(src, "rb") as f:
                    while f.read(1 << 20):
                        pass
                if tool == "wal-e":
                    f = timed(wale_cmd("wal-push", src), env=wale_env(store, "push"))
                elif tool == "wal-e native encryption":
                    f = timed(wale_cmd("wal-push", src), env={**wale_env(store, "push-enc"), **enc_keys()[0]})
                elif tool == "WAL-E 1.1.1":
                    f = timed(walepy_cmd("wal-push", src), env=walepy_env(store, "push"))
                else:
                    f = timed(pgbr_cmd(pgbr_conf(store, "main"), "main", "archive-push", src))
                walls.append(f["wall"])
                rss.append(f["rss_mib"])
            record(f"wal-push one segment ({store})", tool, median_s=statistics.median(walls), min_s=min(walls), runs=len(walls),
                   rss_mib=max(rss))
    # Floor of one push to S3: the server accepting the same compressed bytes from curl over
    # https (no program start, no compression, no existence check): what SeaweedFS itself needs.
    walls = []
    for name in names:
        comp = f"{ROOT}/tmp/{name}.lzo"
        with open(comp, "wb") as out:
            subprocess.run(["lzop", "-1", "-c", f"{ROOT}/pushsrc/{name}"], stdout=out, check=True)
        t0 = time.monotonic()
        subprocess.run(["curl", "-s", "-f", "-o", "/dev/null", "--cacert", S3_CA, "-T", comp, "--aws-sigv4", "aws:amz:us-east-1:s3",
                        "--user", f"{S3_KEY}:{S3_SECRET}", f"https://127.0.0.1:{S3_PORT + 8}/bench-floor/{name}.lzo"], check=True)
        walls.append(time.monotonic() - t0)
        os.unlink(comp)
    record("wal-push one segment (s3)", "floor: curl PUT of the lzop'd segment (https)", median_s=statistics.median(walls),
           min_s=min(walls), runs=len(walls))
    # Floors of one push: starting the program at all, and writing 16 MiB durably to the store's disk.
    for tool, cmd in (("wal-e", wale_cmd("version")), ("pgBackRest lz4", ["pgbackrest", "version"]), ("WAL-E 1.1.1", walepy_cmd("version"))):
        walls = [timed(cmd)["wall"] for _ in range(PUSH_RUNS)]
        record("process start (`version`): part of every wal-push", tool, median_s=statistics.median(walls), min_s=min(walls), runs=len(walls))
    walls = []
    for _ in range(PUSH_RUNS):
        walls.append(timed(["dd", "if=/dev/zero", f"of={ROOT}/store/dd.tmp", "bs=1M", "count=16", "conv=fsync", "status=none"])["wall"])
    os.unlink(f"{ROOT}/store/dd.tmp")
    record("process start (`version`): part of every wal-push", "floor: dd 16 MiB + fsync to the store's disk",
           median_s=statistics.median(walls), min_s=min(walls), runs=len(walls))


def backlog_and_replay():
    """A small cluster whose archiver is stopped while it writes >= REPLAY_GIB of WAL; each tool then
    drains the backlog through archive_command, and restores its base backup and replays it all
    through restore_command."""
    data = f"{ROOT}/backlog"
    tools = {
        "wal-e": (wale_env("file", "backlog"), wale_cmd),
        "WAL-E 1.1.1": (walepy_env("file", "backlog"), walepy_cmd),
    }
    multi = f"{ROOT}/bin/archive-backlog-wal-e-WAL-E-pgbackrest.sh"  # pgBackRest checks for its name
    init_cluster(data, BACKLOG_PORT, "/bin/true")
    conf = pgbr_conf("file", "backlog", BACKLOG_PORT, data)
    run(pgbr_cmd(conf, "backlog", "stanza-create"))
    fresh_dir(f"{ROOT}/store/cp-backlog")  # plain copies: the no-tool floors of backlog and replay
    write_script(multi, "set -e\n" + "".join(f"env {env_line(e)} {' '.join(c('wal-push', '--pool-size', '1', '$1'))}\n" for e, c in tools.values())
                 + f"{' '.join(pgbr_cmd(conf, 'backlog', 'archive-push', '$1'))}\ncp $1 {ROOT}/store/cp-backlog/\n")
    set_archive_command(data, BACKLOG_PORT, f"{multi} %p")
    run([f"{PGBIN}/pgbench", "-h", "127.0.0.1", "-p", str(BACKLOG_PORT), "-i", "-s", "5", "-q", "postgres"])
    run(wale_cmd("backup-push", data), env=tools["wal-e"][0])
    run(walepy_cmd("backup-push", data), env=tools["WAL-E 1.1.1"][0])
    run(pgbr_cmd(conf, "backlog", "backup", "--type=full"))

    # The backlog: the archiver fails while the cluster writes REPLAY_GIB of WAL.
    set_archive_command(data, BACKLOG_PORT, "/bin/false")
    psql(BACKLOG_PORT, "CREATE TABLE feed (id bigint, a text, b text)")
    start = int(psql(BACKLOG_PORT, "SELECT pg_current_wal_lsn() - '0/0'"))
    i = 0
    while int(psql(BACKLOG_PORT, "SELECT pg_current_wal_lsn() - '0/0'")) - start < REPLAY_GIB * (1 << 30):
        psql(BACKLOG_PORT, f"INSERT INTO feed SELECT g, md5(g::text), md5((g * 7)::text) || g FROM generate_series({i}, {i + 999999}) g")
        psql(BACKLOG_PORT, f"UPDATE feed SET a = md5(a) WHERE id % 10 = 0 AND id BETWEEN {i} AND {i + 999999}")
        i += 1000000
    psql(BACKLOG_PORT, "SELECT pg_switch_wal()")
    psql(BACKLOG_PORT, "CHECKPOINT")
    expected_rows = psql(BACKLOG_PORT, "SELECT count(*) FROM feed")
    pg_stop(data)
    ready = set(f[:-6] for f in os.listdir(f"{data}/pg_wal/archive_status") if f.endswith(".ready"))
    saved = f"{ROOT}/backlog.saved"
    if os.path.exists(saved):
        shutil.rmtree(saved)
    run(["cp", "-a", data, saved])
    say(f"backlog: {len(ready)} ready segments ({len(ready) * 16} MiB)")

    async_conf = conf + ".async"
    with open(conf) as f, open(async_conf, "w") as g:
        g.write(f.read().replace("archive-async=n", "archive-async=y"))
    shutil.chown(async_conf, "postgres", "postgres")
    runs = [
        ("wal-e", f"env {env_line(tools['wal-e'][0])} {' '.join(wale_cmd('wal-push', '%p'))}"),
        ("pgBackRest lz4 (sync)", f"{' '.join(pgbr_cmd(conf, 'backlog', 'archive-push', '%p'))}"),
        ("pgBackRest lz4 (async, process-max 2)", f"{' '.join(pgbr_cmd(async_conf, 'backlog', 'archive-push', '%p'))}"),
        ("WAL-E 1.1.1", f"env {env_line(tools['WAL-E 1.1.1'][0])} {' '.join(walepy_cmd('wal-push', '%p'))}"),
        # no tool at all: PostgreSQL's archiver running cp, one process per segment (no compression,
        # no fsync). A reference, not a floor: tools that push several segments per call beat it.
        ("reference: cp as archive_command", f"cp %p {ROOT}/store/cp-backlog/%f"),
    ]
    for tool, cmd in runs:
        if tool.startswith("pgBackRest"):
            # both pgBackRest modes push into the same repository: start from its pre-backlog state
            archive_dir = f"{ROOT}/store/pgbackrest-backlog/archive/backlog"
            for dirpath, _, files in os.walk(archive_dir):
                for fn in files:
                    if fn[:24] in ready:
                        os.unlink(os.path.join(dirpath, fn))
        shutil.rmtree(data)
        run(["cp", "-a", saved, data])
        with open(f"{data}/postgresql.auto.conf", "a") as f:
            f.write(f"archive_command = '{cmd}'\n")
        pg_start(data, BACKLOG_PORT)
        t0 = time.monotonic()
        failed_before = int(psql(BACKLOG_PORT, "SELECT failed_count FROM pg_stat_archiver"))
        while any(f.endswith(".ready") for f in os.listdir(f"{data}/pg_wal/archive_status")):
            if time.monotonic() - t0 > 1800:
                raise SystemExit(f"{tool}: backlog not drained in 30 minutes")
            time.sleep(0.05)
        wall = time.monotonic() - t0
        failed = psql(BACKLOG_PORT, "SELECT failed_count FROM pg_stat_archiver")
        pg_stop(data)
        record("archive backlog drain (file)", tool, segments=len(ready), wall=wall, seg_per_s=len(ready) / wall,
               failed_attempts=int(failed) - failed_before)

    # Replay feed: restore each tool's base backup and recover through all of that WAL. The floor
    # feeds the same WAL with cp from a plain directory: PostgreSQL's redo alone.
    target = f"{ROOT}/restore"
    redo_alone = "floor: redo alone (WAL already in pg_wal)"
    for tool in ("wal-e", "pgBackRest lz4", "WAL-E 1.1.1", "floor: cp", redo_alone):
        fresh_dir(target)
        if tool == "pgBackRest lz4":
            run(pgbr_cmd(conf, "backlog", "restore", f"--pg1-path={target}", "--type=none"))
            # archive-get insists that it runs in pg1-path
            restore = " ".join(pgbr_cmd(conf, "backlog", f"--pg1-path={target}", "archive-get", "%f", '"%p"'))
        elif tool == "floor: cp":
            env, cmd = tools["wal-e"]
            run(cmd("backup-fetch", target, "LATEST"), env=env)
            restore = f"cp {ROOT}/store/cp-backlog/%f \"%p\""
        elif tool == redo_alone:
            # Every segment placed in pg_wal beforehand and no restore_command: the server replays
            # them as crash recovery from the backup label. PostgreSQL's redo, with no fetching.
            env, cmd = tools["wal-e"]
            run(cmd("backup-fetch", target, "LATEST"), env=env)
            os.makedirs(f"{target}/pg_wal", exist_ok=True)
            placed = sorted(f for f in os.listdir(f"{ROOT}/store/cp-backlog") if re.fullmatch(r"[0-9A-F]{24}", f))
            for f in placed:
                shutil.copy(f"{ROOT}/store/cp-backlog/{f}", f"{target}/pg_wal/{f}")
            restore = None
        else:
            env, cmd = tools[tool]
            run(cmd("backup-fetch", target, "LATEST"), env=env)
            restore = f"env {env_line(env)} {' '.join(cmd('wal-fetch', '%f', '%p'))}"
        os.makedirs(f"{target}/pg_wal/archive_status", exist_ok=True)
        for fn in ("postgresql.conf", "pg_hba.conf"):
            shutil.copy(f"{saved}/{fn}", f"{target}/{fn}")
        with open(f"{target}/postgresql.auto.conf", "a") as f:
            f.write("archive_mode = off\n" + (f"restore_command = '{restore}'\nrecovery_target_timeline = 'latest'\n" if restore else ""))
        if restore:
            open(f"{target}/recovery.signal", "w").close()
        run(["chown", "-R", "postgres:postgres", target], user=None)
        log = target + ".log"
        if os.path.exists(log):
            os.unlink(log)
        drop_caches()
        t0 = time.monotonic()
        pg_start(target, RESTORE_PORT, wait=False)
        while True:
            time.sleep(0.05)
            try:
                if psql(RESTORE_PORT, "SELECT pg_is_in_recovery()") == "f":
                    break
            except SystemExit:
                pass
            if time.monotonic() - t0 > 3600:
                raise SystemExit(f"{tool}: recovery did not finish")
            if time.monotonic() - t0 > 5 and not os.path.exists(f"{target}/postmaster.pid"):
                raise SystemExit(f"{tool}: the restored server stopped; see {log}")
        wall = time.monotonic() - t0
        restored = len(re.findall(r"restored log file", open(log, errors="replace").read())) if restore else len(placed)
        rows = psql(RESTORE_PORT, "SELECT count(*) FROM feed")
        pg_stop(target)
        assert rows == expected_rows, f"{tool}: recovered {rows} rows, expected {expected_rows}"
        record("replay feed: archive recovery through restore_command (file)", tool, segments=restored, wall=wall,
               wal_mbs=restored * SEG / 1e6 / wall)
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(saved, ignore_errors=True)


# ---------------------------------------------------------------- report

RATIO_KEYS = {"us_per_file": "lower", "wall": "lower", "median_s": "lower", "mbs": "higher", "seg_per_s": "higher", "wal_mbs": "higher"}


def report(meta, name="latest"):
    os.makedirs(f"{REPO}/bench/results", exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    lines = [f"# wal-e benchmark, {stamp}", "", meta, "",
             "Ratios are wal-e ÷ peer as a speed-up (peer time ÷ wal-e time, or wal-e rate ÷ peer rate): "
             "above 1 means wal-e is faster.", ""]
    sections = []
    for sec, _, _ in ROWS:
        if sec not in sections:
            sections.append(sec)
    summary = {}
    for sec in sections:
        rows = [(t, f) for s, t, f in ROWS if s == sec]
        keys = []
        for _, f in rows:
            keys += [k for k in f if k not in keys]
        ours = next((f for t, f in rows if t == "wal-e"), None)
        lines += [f"## {sec}", "", "| tool | " + " | ".join(keys) + " | wal-e speed-up |", "|---" * (len(keys) + 2) + "|"]
        for t, f in rows:
            cells = [f"{f[k]:.3f}" if isinstance(f.get(k), float) else str(f.get(k, "")) for k in keys]
            ratio = ""
            key = next((k for k in RATIO_KEYS if k in f), None)
            if ours and key and t != "wal-e" and f[key]:
                r = f[key] / ours[key] if RATIO_KEYS[key] == "lower" else ours[key] / f[key]
                ratio = f"{r:.2f}×"
                summary[(sec, t)] = r
            lines.append(f"| {t} | " + " | ".join(cells) + f" | {ratio} |")
        lines.append("")
    text = "\n".join(lines)
    suffix = "" if name == "latest" else "-" + name.split("-")[0]
    for out in (f"{stamp}{suffix}.md", f"{name}.md"):
        with open(f"{REPO}/bench/results/{out}", "w") as f:
            f.write(text)
    with open(f"{REPO}/bench/results/{name}.json", "w") as f:
        json.dump({"meta": meta, "rows": [{"section": s, "tool": t, **fig} for s, t, fig in ROWS]}, f, indent=1)
    print(text)


def versions():
    v = lambda cmd: subprocess.run(cmd, capture_output=True).stdout.decode().strip().splitlines()[0]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return (f"Machine: {os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB. "
            f"PostgreSQL: {v([PGBIN + '/postgres', '--version'])}. wal-e {v([ROOT + '/bin/wal-e', 'version'])} (release build), "
            f"{v(['pgbackrest', 'version'])} (Debian), WAL-E {v([WALE_PY, 'version'])} (PyPI, patched for PG15). "
            f"S3: SeaweedFS on 127.0.0.1 (wal-e and pgBackRest over https, without server-side encryption; WAL-E over http "
            f"with its fixed AES256 server-side encryption). "
            f"Cold page cache before every backup and restore; peak RSS is the largest single process.")


def main():
    for d in ("tmp", "store", "bin", "pushsrc/archive_status"):
        os.makedirs(f"{ROOT}/{d}", exist_ok=True)
    subprocess.run(["chown", "-R", "postgres:postgres", ROOT], check=True)
    os.chmod(ROOT, 0o755)
    only = os.environ.get("BENCH_ONLY", "backup,push,backlog").split(",")
    many = int(os.environ.get("BENCH_MANY_FILES", "0"))
    if only == ["files"]:  # the million-file case alone, without the main cluster
        import many_files
        many_files.run_many_files(sys.modules[__name__], many or 1000000)
        report(versions() + " Only the many-files case (BENCH_ONLY=files).", name="files-latest")
        return
    for b in ("bench-wal-e", "bench-wal-e-py", "bench-pgbackrest", "bench-floor"):
        s3_make_bucket(b)
    meta = versions()
    say(meta)

    # The main cluster: pgbench data and random bytes; the WAL of the load is kept for the push test.
    main = f"{ROOT}/main"
    walsrc = f"{ROOT}/walsrc"
    fresh_dir(walsrc)
    init_cluster(main, MAIN_PORT, f"cp %p {walsrc}/%f")
    say(f"loading pgbench scale {SCALE} and {RANDOM_MB} MB of random bytes")
    run([f"{PGBIN}/pgbench", "-h", "127.0.0.1", "-p", str(MAIN_PORT), "-i", "-s", str(SCALE), "-q", "postgres"])
    psql(MAIN_PORT, "CREATE EXTENSION IF NOT EXISTS pgcrypto")
    rows = RANDOM_MB * 1000 * 1000 // 1170  # ~1170 bytes of heap per 1 KiB row
    psql(MAIN_PORT, f"CREATE TABLE random_data AS SELECT g AS id, gen_random_bytes(1024) AS payload FROM generate_series(1, {rows}) g")
    psql(MAIN_PORT, "SELECT pg_switch_wal()")
    psql(MAIN_PORT, "CHECKPOINT")
    time.sleep(2)
    for s in sorted(os.listdir(walsrc)):
        if re.fullmatch(r"[0-9A-F]{24}", s):
            shutil.copy(f"{walsrc}/{s}", f"{ROOT}/pushsrc/{s}")
    subprocess.run(["chown", "-R", "postgres:postgres", f"{ROOT}/pushsrc"], check=True)

    # From here on every WAL segment goes to all six repositories (backups wait for their WAL);
    # --pool-size 1: a tool that pushes .ready neighbours would mark them .done for the others.
    pgbr = {s: pgbr_conf(s) for s in ("file", "s3")}
    for s in pgbr.values():
        run(pgbr_cmd(s, "main", "stanza-create"))
    script = f"{ROOT}/bin/archive-main-wal-e-WAL-E-pgbackrest.sh"  # pgBackRest checks for its name
    write_script(script, "set -e\n" + "".join(
        f"env {env_line(wale_env(s))} {' '.join(wale_cmd('wal-push', '--pool-size', '1', '$1'))}\n"
        f"env {env_line(walepy_env(s))} {' '.join(walepy_cmd('wal-push', '--pool-size', '1', '$1'))}\n"
        f"{' '.join(pgbr_cmd(pgbr[s], 'main', 'archive-push', '$1'))}\n" for s in ("file", "s3")))
    set_archive_command(main, MAIN_PORT, f"{script} %p")
    psql(MAIN_PORT, "SELECT pg_switch_wal()")
    base_bytes = du(main, exclude="pg_wal")
    meta += (f" Cluster: pgbench scale {SCALE} + {RANDOM_MB} MB of random bytea = {base_bytes / 1e6:.0f} MB without pg_wal.")

    if "backup" in only:
        backups_and_restores(main, base_bytes)
    if "push" in only:
        single_pushes(f"{ROOT}/pushsrc")
    pg_stop(main)
    if "backlog" in only:
        backlog_and_replay()
    if many:
        import many_files
        many_files.run_many_files(sys.modules[__name__], many)
    report(meta)


if __name__ == "__main__":
    main()
