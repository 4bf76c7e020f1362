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
RUNS = int(os.environ.get("BENCH_RUNS", "1"))  # repetitions of every measured section: medians and spread
WALE_PY = os.environ.get("BENCH_WALE_PY", "/opt/wal-e-test/wale-venv/bin/wal-e")
BARMAN_BIN = os.environ.get("BENCH_BARMAN_BIN", "/opt/wal-e-test/barman-venv/bin")  # barman[cloud] (PyPI), S3 rows only
S3_PORT = int(os.environ["WALE_TEST_S3_ENDPOINT"].rsplit(":", 1)[1])
S3_KEY, S3_SECRET = os.environ["WALE_TEST_S3_ACCESS_KEY"], os.environ["WALE_TEST_S3_SECRET_KEY"]
S3_CA = os.environ["WALE_TEST_S3_CA"]
SEG = 16 << 20
MAIN_PORT, BACKLOG_PORT, RESTORE_PORT = 5611, 5612, 5613
ROWS = []  # (section, tool, figure dict, run index)
RUN = 0  # the repetition being measured (BENCH_RUNS)
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
                f"lock-path={ROOT}/run\nspool-path={ROOT}/spool-{store}-{cluster}\nstart-fast=y\nprocess-max=2\ncompress-type=lz4\n"
                f"archive-async=n\n\n[{cluster}]\npg1-path={data or ROOT + '/' + cluster}\npg1-port={port}\n"
                f"pg1-socket-path=/var/run/postgresql\n")
    shutil.chown(path, "postgres", "postgres")
    for d in (f"{ROOT}/run", f"{ROOT}/spool-{store}-{cluster}"):  # async's spool per repository: it remembers what it pushed
        mkdir_pg(d)
    return path


def wale_cmd(*args):
    return [f"{ROOT}/bin/wal-e", *args]


def walepy_cmd(*args):
    return [WALE_PY, *args]


def barman_env():
    # boto3 over https to the same endpoint as wal-e and pgBackRest, verifying the private CA;
    # SeaweedFS does not take boto3's default request checksums
    return {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_CA_BUNDLE": S3_CA, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}


def barman_cmd(prog, cluster, *args, options=()):
    """A barman-cloud program on the cluster's S3 repository (bucket bench-barman, lz4 as pgBackRest)."""
    return [f"{BARMAN_BIN}/barman-cloud-{prog}", "--endpoint-url", f"https://127.0.0.1:{S3_PORT + 8}", *options,
            f"s3://bench-barman/{cluster}", cluster, *args]


def barman_version():
    p = subprocess.run([f"{BARMAN_BIN}/barman-cloud-backup", "--version"], capture_output=True)
    return "Barman " + (p.stdout + p.stderr).decode().split()[-1]


BARMAN = barman_version() if os.path.exists(f"{BARMAN_BIN}/barman-cloud-backup") else "Barman"


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
    ROWS.append((section, tool, fig, RUN))
    say(f"run {RUN + 1}/{RUNS}: {section} | {tool} | " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in fig.items()))


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
        if store == "s3":
            targets.append((BARMAN, store, None))  # barman-cloud writes to object stores only
    labels = {}
    wale_names = {}

    def stored_total(repo, store):  # bytes of a WAL-E-layout repository's base backups so far
        if store == "file":
            path = f"{ROOT}/store/{repo}-main/basebackups_005"
            return du(path) if os.path.isdir(path) else 0
        return s3_size({"wal-e": "bench-wal-e", "WAL-E": "bench-wal-e-py"}[repo], "main/basebackups_005")
    enc_env = {"wal-e gpg": lambda: gpg_env(), "wal-e native encryption": lambda: enc_keys()[0], "wal-e": lambda: {}}
    for tool, store, codec in targets:
        first_push("main", tool, store)
        psql(MAIN_PORT, "CHECKPOINT")
        wait_archived(main)
        drop_caches()
        if tool in enc_env:
            # Native encryption: only the public key on the database side, as in production.
            # --fast: an immediate checkpoint, as pgBackRest's start-fast=y below (a spread one
            # measures PostgreSQL's checkpoint pacing, up to 30 s in one run, not the tool).
            before = stored_total("wal-e", store)
            f = timed(wale_cmd("backup-push", "--fast", main), env={**wale_env(store), **enc_env[tool]()})
            stored = stored_total("wal-e", store) - before
            wale_names[(tool, store)] = newest_wale_backup(store)
        elif tool == "WAL-E 1.1.1":
            before = stored_total("WAL-E", store)
            f = timed(walepy_cmd("backup-push", main), env=walepy_env(store))
            stored = stored_total("WAL-E", store) - before
        elif tool == BARMAN:
            before = s3_size("bench-barman", "main/main/base")
            f = timed(barman_cmd("backup", "main", options=("--lz4", "--immediate-checkpoint", "-J", "2", "-h", "127.0.0.1", "-p",
                                                          str(MAIN_PORT), "-U", "postgres")), env=barman_env())
            stored = s3_size("bench-barman", "main/main/base") - before
        else:
            conf = pgbr_conf(store)
            f = timed(pgbr_cmd(conf, "main", "backup", "--type=full", f"--compress-type={codec}"))
            info = json.loads(run(pgbr_cmd(conf, "main", "info", "--output=json")).stdout)
            last = info[0]["backup"][-1]
            labels[(store, codec)] = last["label"]
            stored = last["info"]["repository"]["delta"]
        record(f"backup-push ({store})", tool, wall=f["wall"], mbs=base_bytes / 1e6 / f["wall"], cpu=f["cpu"], rss_mib=f["rss_mib"],
               stored_mb=stored / 1e6)
    all_pushes("main")
    s3_floors(f"{ROOT}/store/wal-e-main/basebackups_005/{wale_names[('wal-e', 'file')]}/tar_partitions", base_bytes)
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
        elif tool == BARMAN:
            f = timed(barman_cmd("restore", "main", "latest", target), env=barman_env())
        else:
            conf = pgbr_conf(store)
            f = timed(pgbr_cmd(conf, "main", "restore", f"--pg1-path={target}", f"--set={labels[(store, codec)]}", "--type=none"))
        restored = du(target, exclude="pg_wal")
        record(f"backup-fetch / restore ({store})", tool, wall=f["wall"], mbs=base_bytes / 1e6 / f["wall"], cpu=f["cpu"],
               rss_mib=f["rss_mib"], restored_mb=restored / 1e6)
    shutil.rmtree(f"{ROOT}/restore", ignore_errors=True)


def s3_floors(parts, base_bytes, sections=("backup-push (s3)", "backup-fetch / restore (s3)"), **fields):
    """What the S3 server itself needs for a backup's bytes: curl PUTting wal-e's stored partitions
    (the directory `parts` of its file:// backup, already compressed) over https, four at once as
    wal-e's pool, and GETting them back to /dev/null: no tool can push or fetch those bytes faster
    through this server. `fields` go into both rows (the cost curve's `mb`)."""
    curl = (f"curl -s -f --cacert {S3_CA} --aws-sigv4 aws:amz:us-east-1:s3 --user {S3_KEY}:{S3_SECRET} "
            f"https://127.0.0.1:{S3_PORT + 8}/bench-floor/{RUN}")
    drop_caches()
    f = timed(["sh", "-c", f"cd {parts} && ls | xargs -P 4 -I{{}} {curl}/{{}} -T {{}} -o /dev/null"])
    record(sections[0], "floor: curl PUT of wal-e's stored partitions (https, 4 at once)", **fields, wall=f["wall"],
           mbs=base_bytes / 1e6 / f["wall"], cpu=f["cpu"])
    f = timed(["sh", "-c", f"cd {parts} && ls | xargs -P 4 -I{{}} {curl}/{{}} -o /dev/null"])
    record(sections[1], "floor: curl GET of those partitions (https, 4 at once)", **fields, wall=f["wall"],
           mbs=base_bytes / 1e6 / f["wall"], cpu=f["cpu"])


def single_pushes(walsrc):
    """wal-push of one 16 MiB segment (a real one from the data load), a fresh name each run."""
    segs = sorted(s for s in os.listdir(walsrc) if re.fullmatch(r"[0-9A-F]{24}", s))
    # The same real segments for every tool (each has its own repository), from the middle of the
    # load; each repetition (BENCH_RUNS) pushes segments of its own: a name already archived would
    # measure the tools' duplicate check instead of a push.
    first = max(0, len(segs) // 2 - (RUNS * PUSH_RUNS) // 2) + RUN * PUSH_RUNS
    names = segs[first:first + PUSH_RUNS]
    assert len(names) == PUSH_RUNS, f"only {len(segs)} segments in {walsrc} for {RUNS} runs of {PUSH_RUNS}"
    for store in ("file", "s3"):
        tools = ("wal-e", "wal-e native encryption", "pgBackRest lz4", "WAL-E 1.1.1") + ((BARMAN,) if store == "s3" else ())
        walls_of, rss_of = {t: [] for t in tools}, {t: [] for t in tools}
        # Interleaved: each segment is pushed by every tool in turn, starting with another tool each
        # time, so a slow spell of the machine (writeback, a noisy neighbour) falls on all of them
        # instead of on whichever tool was measured then.
        for i, name in enumerate(names):
            for tool in tools[i % len(tools):] + tools[:i % len(tools)]:
                walls, rss = walls_of[tool], rss_of[tool]
                # a copy outside pg_wal, so no .ready neighbours come into it
                src = f"{ROOT}/pushsrc/{name}"
                # archive_command pushes a segment PostgreSQL has just written: in the page cache
                with open(src, "rb") as f:
                    while f.read(1 << 20):
                        pass
                # Each push starts with no dirty pages waiting (untimed): otherwise the first tool
                # measured after the data load pays for its writeback in its fsync (wal-e's median
                # was 50-64 ms against 29-36 ms minima in a BENCH_ONLY=push run).
                os.sync()
                if tool == "wal-e":
                    f = timed(wale_cmd("wal-push", src), env=wale_env(store, "push"))
                elif tool == "wal-e native encryption":
                    f = timed(wale_cmd("wal-push", src), env={**wale_env(store, "push-enc"), **enc_keys()[0]})
                elif tool == "WAL-E 1.1.1":
                    f = timed(walepy_cmd("wal-push", src), env=walepy_env(store, "push"))
                elif tool == BARMAN:
                    f = timed(barman_cmd("wal-archive", "push", src, options=("--lz4",)), env=barman_env())
                else:
                    f = timed(pgbr_cmd(pgbr_conf(store, "main"), "main", "archive-push", src))
                walls.append(f["wall"])
                rss.append(f["rss_mib"])
        for tool in tools:
            walls, rss = walls_of[tool], rss_of[tool]
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
    drains the backlog through archive_command (file), and restores its base backup and replays it
    all through restore_command (file and S3): the replay rows, and the time from an empty directory
    to a database that accepts connections (restore + replay, each from a cold page cache)."""
    data = f"{ROOT}/backlog"
    # Each repetition has a cluster of its own (a new system identifier): its own repositories.
    name = "backlog" if RUN == 0 else f"backlog-r{RUN + 1}"
    PORTS[name] = BACKLOG_PORT
    for old in os.listdir(f"{ROOT}/store"):
        if "-backlog" in old:  # the previous repetition's file repositories (and their -async twins)
            shutil.rmtree(f"{ROOT}/store/{old}")
    tools = {(store, t): v for store in ("file", "s3") for t, v in (
        ("wal-e", (wale_env(store, name), wale_cmd)), ("WAL-E 1.1.1", (walepy_env(store, name), walepy_cmd)))}
    init_cluster(data, BACKLOG_PORT, "/bin/true")
    conf = {store: pgbr_conf(store, name, BACKLOG_PORT, data) for store in ("file", "s3")}
    for c in conf.values():
        run(pgbr_cmd(c, name, "stanza-create"))
    fresh_dir(f"{ROOT}/store/cp-backlog")  # plain copies: the no-tool floors of backlog and replay
    multi = {}
    for store in ("file", "s3"):
        multi[store] = f"{ROOT}/bin/archive-{store}-{name}-wal-e-WAL-E-pgbackrest.sh"  # pgBackRest checks for its name
        write_script(multi[store], "set -e\n" + "".join(
            f"env {env_line(e)} {' '.join(c('wal-push', '--pool-size', '1', '$1'))}\n" for (st, _), (e, c) in tools.items() if st == store)
            + f"{' '.join(pgbr_cmd(conf[store], name, 'archive-push', '$1'))}\n" + (f"cp $1 {ROOT}/store/cp-backlog/\n" if store == "file" else
              f"env {env_line(barman_env())} {' '.join(barman_cmd('wal-archive', name, '$1', options=('--lz4',)))}\n"))
    both = f"{ROOT}/bin/archive-both-{name}-wal-e-WAL-E-pgbackrest.sh"
    write_script(both, f"set -e\n{multi['file']} $1\n{multi['s3']} $1\n")
    set_archive_command(data, BACKLOG_PORT, f"{both} %p")
    run([f"{PGBIN}/pgbench", "-h", "127.0.0.1", "-p", str(BACKLOG_PORT), "-i", "-s", "5", "-q", "postgres"])
    for store in ("file", "s3"):
        # a CHECKPOINT first: the backups' own (spread, checkpoint_timeout = 1h) then has nothing to write
        backups = [(wale_cmd("backup-push", data), tools[(store, "wal-e")][0]), (walepy_cmd("backup-push", data), tools[(store, "WAL-E 1.1.1")][0]),
                   (pgbr_cmd(conf[store], name, "backup", "--type=full"), None)]
        if store == "s3":
            backups.append((barman_cmd("backup", name, options=("--lz4", "-h", "127.0.0.1", "-p", str(BACKLOG_PORT), "-U", "postgres")),
                            barman_env()))
        for cmd, env in backups:
            psql(BACKLOG_PORT, "CHECKPOINT")
            run(cmd, env=env)

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

    def drain(archive_command, tool, timeout=1800):
        """Starts the saved cluster with archive_command; returns the seconds until nothing is .ready."""
        shutil.rmtree(data)
        run(["cp", "-a", saved, data])
        with open(f"{data}/postgresql.auto.conf", "a") as f:
            f.write(f"archive_command = '{archive_command}'\n")
        pg_start(data, BACKLOG_PORT)
        t0 = time.monotonic()
        failed_before = int(psql(BACKLOG_PORT, "SELECT failed_count FROM pg_stat_archiver"))
        while any(f.endswith(".ready") for f in os.listdir(f"{data}/pg_wal/archive_status")):
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"{tool}: backlog not drained in {timeout} s")
            if not os.path.exists(f"{data}/postmaster.pid"):
                # PostgreSQL stopped (a full disk makes it PANIC): nothing will drain it
                raise SystemExit(f"{tool}: PostgreSQL stopped during the backlog drain; see {data}.log")
            time.sleep(0.05)
        wall = time.monotonic() - t0
        failed = int(psql(BACKLOG_PORT, "SELECT failed_count FROM pg_stat_archiver")) - failed_before
        pg_stop(data)
        return wall, failed

    async_conf = conf["file"] + ".async"
    with open(conf["file"]) as f, open(async_conf, "w") as g:
        g.write(f.read().replace("archive-async=n", "archive-async=y"))
    shutil.chown(async_conf, "postgres", "postgres")
    runs = [
        ("wal-e", f"env {env_line(tools[('file', 'wal-e')][0])} {' '.join(wale_cmd('wal-push', '%p'))}"),
        (WALE_ASYNC, f"env {env_line(async_env(tools[('file', 'wal-e')][0]))} {' '.join(wale_cmd('wal-push', '%p'))}"),
        ("pgBackRest lz4 (sync)", f"{' '.join(pgbr_cmd(conf['file'], name, 'archive-push', '%p'))}"),
        ("pgBackRest lz4 (async, process-max 2)", f"{' '.join(pgbr_cmd(async_conf, name, 'archive-push', '%p'))}"),
        ("WAL-E 1.1.1", f"env {env_line(tools[('file', 'WAL-E 1.1.1')][0])} {' '.join(walepy_cmd('wal-push', '%p'))}"),
        # no tool at all: PostgreSQL's archiver running cp, one process per segment (no compression,
        # no fsync). A reference, not a floor: tools that push several segments per call beat it.
        ("reference: cp as archive_command", f"cp %p {ROOT}/store/cp-backlog/%f"),
    ]
    for tool, cmd in runs:
        if tool.startswith("pgBackRest"):
            # both pgBackRest modes push into the same repository: start from its pre-backlog state
            archive_dir = f"{ROOT}/store/pgbackrest-{name}/archive/{name}"
            for dirpath, _, files in os.walk(archive_dir):
                for fn in files:
                    if fn[:24] in ready:
                        os.unlink(os.path.join(dirpath, fn))
        wall, failed = drain(cmd, tool)
        record("archive backlog drain (file)", tool, segments=len(ready), wall=wall, seg_per_s=len(ready) / wall, failed_attempts=failed)
    # Floor: lzop -1 over the backlog's segments on both cores, from the page cache: the compression
    # any lzop-writing tool must do, without reading from disk, writing, or starting anything.
    segs = " ".join(f"{saved}/pg_wal/{s}" for s in sorted(ready))
    run(["sh", "-c", f"cat {segs} > /dev/null"], user=None)
    f = timed(["sh", "-c", f"printf '%s\\n' {segs} | xargs -P 2 -n 4 sh -c 'cat \"$@\" | lzop -1 -c > /dev/null' sh"], user=None)
    record("archive backlog drain (file)", "floor: lzop -1 of the segments on 2 cores (cached)", segments=len(ready), wall=f["wall"],
           seg_per_s=len(ready) / f["wall"])
    # The same backlog into each tool's S3 repository (the replay rows read it from there).
    async_s3 = conf["s3"] + ".async"
    with open(conf["s3"]) as f, open(async_s3, "w") as g:
        g.write(f.read().replace("archive-async=n", "archive-async=y"))
    shutil.chown(async_s3, "postgres", "postgres")
    for tool, cmd in (
            ("wal-e", f"env {env_line(tools[('s3', 'wal-e')][0])} {' '.join(wale_cmd('wal-push', '%p'))}"),
            (WALE_ASYNC, f"env {env_line(async_env(tools[('s3', 'wal-e')][0]))} {' '.join(wale_cmd('wal-push', '%p'))}"),
            ("pgBackRest lz4 (async, process-max 2)", f"{' '.join(pgbr_cmd(async_s3, name, 'archive-push', '%p'))}"),
            ("WAL-E 1.1.1", f"env {env_line(tools[('s3', 'WAL-E 1.1.1')][0])} {' '.join(walepy_cmd('wal-push', '%p'))}"),
            (BARMAN, f"env {env_line(barman_env())} {' '.join(barman_cmd('wal-archive', name, '%p', options=('--lz4',)))}")):
        wall, failed = drain(cmd, tool, timeout=3600)
        record("archive backlog drain (s3)", tool, segments=len(ready), wall=wall, seg_per_s=len(ready) / wall, failed_attempts=failed)
    # Floor: the server taking wal-e's compressed segments (its file drain's objects) from curl
    # over https, four at once: no tool can archive those bytes through this server faster.
    objects = f"{ROOT}/store/wal-e-{name}/wal_005"
    listed = " ".join(f"{s}.lzo" for s in sorted(ready) if os.path.exists(f"{objects}/{s}.lzo"))
    curl = (f"curl -s -f --cacert {S3_CA} --aws-sigv4 aws:amz:us-east-1:s3 --user {S3_KEY}:{S3_SECRET} "
            f"https://127.0.0.1:{S3_PORT + 8}/bench-floor/backlog-{RUN}")
    f = timed(["sh", "-c", f"cd {objects} && printf '%s\\n' {listed} | xargs -P 4 -I{{}} {curl}/{{}} -T {{}} -o /dev/null"])
    record("archive backlog drain (s3)", "floor: curl PUT of wal-e's compressed segments (https, 4 at once)", segments=len(ready),
           wall=f["wall"], seg_per_s=len(ready) / f["wall"])

    # Replay feed: restore each tool's base backup and recover through all of that WAL. The floor
    # feeds the same WAL with cp from a plain directory: PostgreSQL's redo alone.
    target = f"{ROOT}/restore"
    redo_alone = "floor: redo alone (WAL already in pg_wal)"
    cases = [(store, t) for store in ("file", "s3") for t in ("wal-e", "pgBackRest lz4", "WAL-E 1.1.1") + ((BARMAN,) if store == "s3" else ())]
    cases += [("file", "floor: cp"), ("file", redo_alone)]
    for store, tool in cases:
        fresh_dir(target)
        drop_caches()
        if tool == "pgBackRest lz4":
            restored_in = timed(pgbr_cmd(conf[store], name, "restore", f"--pg1-path={target}", "--type=none"))["wall"]
            # archive-get insists that it runs in pg1-path
            restore = " ".join(pgbr_cmd(conf[store], name, f"--pg1-path={target}", "archive-get", "%f", '"%p"'))
        elif tool == BARMAN:
            restored_in = timed(barman_cmd("restore", name, "latest", target), env=barman_env())["wall"]
            restore = f"env {env_line(barman_env())} {' '.join(barman_cmd('wal-restore', name, '%f', '%p'))}"
        elif tool == "floor: cp":
            env, cmd = tools[(store, "wal-e")]
            restored_in = timed(cmd("backup-fetch", target, "LATEST"), env=env)["wall"]
            restore = f"cp {ROOT}/store/cp-backlog/%f \"%p\""
        elif tool == redo_alone:
            # Every segment placed in pg_wal beforehand and no restore_command: the server replays
            # them as crash recovery from the backup label. PostgreSQL's redo, with no fetching.
            env, cmd = tools[(store, "wal-e")]
            restored_in = timed(cmd("backup-fetch", target, "LATEST"), env=env)["wall"]
            os.makedirs(f"{target}/pg_wal", exist_ok=True)
            placed = sorted(f for f in os.listdir(f"{ROOT}/store/cp-backlog") if re.fullmatch(r"[0-9A-F]{24}", f))
            for f in placed:
                shutil.copy(f"{ROOT}/store/cp-backlog/{f}", f"{target}/pg_wal/{f}")
            restore = None
        else:
            env, cmd = tools[(store, tool)]
            restored_in = timed(cmd("backup-fetch", target, "LATEST"), env=env)["wall"]
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
        assert rows == expected_rows, f"{tool} ({store}): recovered {rows} rows, expected {expected_rows}"
        record(f"replay feed: archive recovery through restore_command ({store})", tool, segments=restored, wall=wall,
               wal_mbs=restored * SEG / 1e6 / wall)
        if not tool.startswith("floor"):
            record(f"time to a consistent database: restore, then replay of the backlog's WAL ({store})", tool,
                   backlog_mib=len(ready) * 16, restore_s=restored_in, replay_s=wall, wall=restored_in + wall)
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(saved, ignore_errors=True)


# ---------------------------------------------------------------- report

RATIO_KEYS = {"us_per_file": "lower", "wall": "lower", "median_s": "lower", "mbs": "higher", "seg_per_s": "higher", "wal_mbs": "higher"}


def aggregate(rows=None):
    """[(section, tool, median figure, {run: figure})] in first-seen order: each numeric figure is
    the median over the repetitions (BENCH_RUNS) that measured it."""
    order, per = [], {}
    for sec, tool, fig, r in ROWS if rows is None else rows:
        if (sec, tool) not in per:
            order.append((sec, tool))
            per[(sec, tool)] = {}
        per[(sec, tool)][r] = fig
    out = []
    for sec, tool in order:
        figs = per[(sec, tool)]
        med = {}
        for f in figs.values():
            for k in f:
                if k not in med:
                    vals = [g[k] for g in figs.values() if k in g]
                    numeric = all(isinstance(v, (int, float)) for v in vals)
                    med[k] = statistics.median(vals) if numeric else vals[0]
        out.append((sec, tool, med, figs))
    return out


WALE_ASYNC = "wal-e async (WALE_ARCHIVE_ASYNC=on)"


def async_env(e):
    """wal-e's environment with asynchronous archiving, into a prefix of its own (the synchronous
    run's objects would otherwise be found identical and not pushed again)."""
    e = dict(e, WALE_ARCHIVE_ASYNC="on")
    key = "WALE_FILE_PREFIX" if "WALE_FILE_PREFIX" in e else "WALE_S3_PREFIX"
    e[key] += "-async"
    return e


def speedup(key, ours, theirs):
    return theirs[key] / ours[key] if RATIO_KEYS[key] == "lower" else ours[key] / theirs[key]


def report(meta, name="latest"):
    os.makedirs(f"{REPO}/bench/results", exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    runs = len({r for *_, r in ROWS})
    lines = [f"# wal-e benchmark, {stamp}", "", meta, "",
             "Ratios are wal-e ÷ peer as a speed-up (peer time ÷ wal-e time, or wal-e rate ÷ peer rate): "
             "above 1 means wal-e is faster."]
    if runs > 1:
        lines += ["", f"Every figure is the median of {runs} runs (BENCH_RUNS={runs}); `spread` is (largest − smallest) ÷ "
                  "median of the row's main figure across the runs, and the speed-up is the ratio of the medians with "
                  "the lowest and highest of the runs' own ratios in brackets."]
    lines.append("")
    agg = aggregate()
    sections = []
    for sec, *_ in agg:
        if sec not in sections:
            sections.append(sec)
    for sec in sections:
        rows = [(t, med, figs) for s, t, med, figs in agg if s == sec]
        keys = []
        for _, med, _ in rows:
            keys += [k for k in med if k not in keys]
        ours = next(((med, figs) for t, med, figs in rows if t == "wal-e"), None)
        spread_col = runs > 1
        lines += [f"## {sec}", "", "| tool | " + " | ".join(keys) + (" | spread" if spread_col else "") + " | wal-e speed-up |",
                  "|---" * (len(keys) + 2 + spread_col) + "|"]
        for t, med, figs in rows:
            cells = [f"{med[k]:.3f}" if isinstance(med.get(k), float) else str(med.get(k, "")) for k in keys]
            key = next((k for k in RATIO_KEYS if k in med), None)
            if spread_col:
                vals = [f[key] for f in figs.values() if key and key in f]
                cells.append(f"{(max(vals) - min(vals)) / med[key] * 100:.0f} %" if len(vals) > 1 and med[key] else "")
            ratio = ""
            if ours and key and t != "wal-e" and med.get(key) and ours[0].get(key):
                ratio = f"{speedup(key, ours[0], med):.2f}×"
                per_run = [speedup(key, ours[1][r], f) for r, f in figs.items() if r in ours[1] and f.get(key) and ours[1][r].get(key)]
                if len(per_run) > 1:
                    ratio += f" ({min(per_run):.2f}–{max(per_run):.2f})"
            lines.append(f"| {t} | " + " | ".join(cells) + f" | {ratio} |")
        mine = next(((med, figs) for t, med, figs in rows if t == WALE_ASYNC), None)
        for t, med, figs in rows:
            key = next((k for k in RATIO_KEYS if k in med), None)
            if mine and "(async" in t and key and mine[0].get(key) and med.get(key):
                per_run = [speedup(key, mine[1][r], f) for r, f in figs.items() if r in mine[1] and f.get(key) and mine[1][r].get(key)]
                spread = f" ({min(per_run):.2f}–{max(per_run):.2f})" if len(per_run) > 1 else ""
                lines += ["", f"Asynchronous against asynchronous: {WALE_ASYNC} is **{speedup(key, mine[0], med):.2f}×** {t}{spread}."]
        lines.append("")
    if any(sec.startswith("scale") for sec in sections):
        import scales
        lines += scales.slope_lines(sys.modules[__name__], agg)
    text = "\n".join(lines)
    suffix = "" if name == "latest" else "-" + name.split("-")[0]
    for out in (f"{stamp}{suffix}.md", f"{name}.md"):
        with open(f"{REPO}/bench/results/{out}", "w") as f:
            f.write(text)
    with open(f"{REPO}/bench/results/{name}.json", "w") as f:
        json.dump({"meta": meta, "runs": runs, "rows": [{"section": s, "tool": t, "run": r + 1, **fig} for s, t, fig, r in ROWS],
                   "medians": [{"section": s, "tool": t, **med} for s, t, med, _ in agg]}, f, indent=1)
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
    for b in ("bench-wal-e", "bench-wal-e-py", "bench-pgbackrest", "bench-floor", "bench-barman"):
        s3_make_bucket(b)
    meta = versions()
    say(meta)

    global RUN
    scale_list = [int(x) for x in os.environ.get("BENCH_SCALES", "").split(",") if x.strip()]
    if "backup" in only or "push" in only:
        meta += main_cluster(only)
    if "backlog" in only:
        for RUN in range(RUNS):
            backlog_and_replay()
    if scale_list:
        import scales
        meta += scales.run_scales(sys.modules[__name__], scale_list)
    if many:
        import many_files
        many_files.run_many_files(sys.modules[__name__], many)
    if "incremental" in only or os.environ.get("BENCH_INCREMENTAL") == "1":
        import incremental
        meta += incremental.run_incremental(sys.modules[__name__])
    # the cost curve alone (BENCH_ONLY=scales) has a report of its own, next to the main one
    report(meta, name={"scales": "scales-latest", "incremental": "incremental-latest"}.get(",".join(only), "latest"))


def load_cluster(port, scale, random_mb):
    """pgbench data (very compressible) and a table of random bytes (incompressible)."""
    say(f"loading pgbench scale {scale} and {random_mb} MB of random bytes")
    run([f"{PGBIN}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-i", "-s", str(scale), "-q", "postgres"])
    psql(port, "CREATE EXTENSION IF NOT EXISTS pgcrypto")
    rows = random_mb * 1000 * 1000 // 1170  # ~1170 bytes of heap per 1 KiB row
    psql(port, f"CREATE TABLE random_data AS SELECT g AS id, gen_random_bytes(1024) AS payload FROM generate_series(1, {rows}) g")
    psql(port, "SELECT pg_switch_wal()")
    psql(port, "CHECKPOINT")


def archive_to_all(cluster, stores=("file", "s3"), tools=("wal-e", "WAL-E 1.1.1", "pgBackRest lz4", "Barman")):
    """archive_command script pushing every segment to each tool's repository on each store;
    --pool-size 1: a tool that pushes .ready neighbours would mark them .done for the others."""
    confs = {s: pgbr_conf(s, cluster, PORTS[cluster], f"{ROOT}/{cluster}") for s in stores}
    if "pgBackRest lz4" in tools:
        for c in confs.values():
            run(pgbr_cmd(c, cluster, "stanza-create"))
    pushes = {}
    for s in stores:
        if "wal-e" in tools:
            pushes[f"wal-e-{s}"] = f"env {env_line(wale_env(s, cluster))} {' '.join(wale_cmd('wal-push', '--pool-size', '1', '$1'))}"
        if "WAL-E 1.1.1" in tools:
            pushes[f"WAL-E-{s}"] = f"env {env_line(walepy_env(s, cluster))} {' '.join(walepy_cmd('wal-push', '--pool-size', '1', '$1'))}"
        if "pgBackRest lz4" in tools:
            pushes[f"pgBackRest-{s}"] = ' '.join(pgbr_cmd(confs[s], cluster, 'archive-push', '$1'))
        if "Barman" in tools and s == "s3":
            pushes[f"Barman-{s}"] = f"env {env_line(barman_env())} {' '.join(barman_cmd('wal-archive', cluster, '$1', options=('--lz4',)))}"
    script = f"{ROOT}/bin/archive-{cluster}-wal-e-WAL-E-pgbackrest.sh"  # pgBackRest checks for its name
    write_fair_script(script, pushes, f"{ROOT}/bin/first-{cluster}")
    return script, confs


def write_fair_script(path, pushes, first_file):
    """An archive_command for several tools' repositories that leaves each timed backup alone with
    its own tool. While `first_file` names a repository (first_push(), before each timed backup),
    a segment is pushed there only, and a copy is kept in a spool with the list of the others;
    deferred_pushes() pushes those later, untimed. Otherwise every push runs at once, failing if
    any fails. A backup's start and stop each finish a segment: pushed to every repository on the
    spot, a tool's figure would include the other tools' pushes (six, three in Python, on two
    cores), and with a fixed order the pushes of the tools listed before it."""
    cases = "".join(f"  {key}) {cmd} ;;\n" for key, cmd in pushes.items())
    spool = first_file + ".spool"
    os.makedirs(spool, exist_ok=True)
    shutil.chown(spool, "postgres", "postgres")
    write_script(path, f"set -e\npush() {{\n  case \"$2\" in\n{cases}  *) exit 3 ;;\n  esac\n}}\n"
                 f"first=$(cat {first_file} 2>/dev/null || true)\n"
                 f"if [ -n \"$first\" ]; then\n  push \"$1\" \"$first\"\n  cp \"$1\" {spool}/\n"
                 f"  echo \"$first $(basename \"$1\")\" >> {spool}/queue\n  exit 0\nfi\npids=''\n"
                 f"for t in {' '.join(pushes)}; do\n  push \"$1\" $t &\n  pids=\"$pids $!\"\ndone\n"
                 "for p in $pids; do wait $p; done\n")
    flush = path[:-3] + "-deferred.sh"
    write_script(flush, f"set -e\n[ -f {spool}/queue ] || exit 0\n"
                 f"while read done seg; do\n  for t in {' '.join(pushes)}; do\n    [ \"$t\" = \"$done\" ] || {path} {spool}/$seg $t\n"
                 f"  done\n  rm -f {spool}/$seg\ndone < {spool}/queue\nrm -f {spool}/queue\n")
    # the per-tool form: `script SEGMENT KEY` pushes to that repository only
    with open(path) as f:
        text = f.read()
    text = text.replace("set -e\n", f"set -e\nPUSH_ONLY=${{2:-}}\n", 1).replace(
        f"first=$(cat {first_file} 2>/dev/null || true)\n", f"[ -z \"$PUSH_ONLY\" ] || {{ push \"$1\" \"$PUSH_ONLY\"; exit 0; }}\n"
        f"first=$(cat {first_file} 2>/dev/null || true)\n", 1)
    with open(path, "w") as f:
        f.write(text)
    with open(first_file, "w") as f:
        f.write("")
    shutil.chown(first_file, "postgres", "postgres")


def first_push(cluster, tool, store):
    """Pushes what earlier timed backups deferred, then names the repository the cluster's
    archive_command pushes to alone until the next call (see write_fair_script)."""
    run(["sh", f"{ROOT}/bin/archive-{cluster}-wal-e-WAL-E-pgbackrest-deferred.sh"])
    key = {"wal-e": "wal-e", "WAL-E 1.1.1": "WAL-E", "pgBackRest lz4": "pgBackRest", "pgBackRest zst": "pgBackRest"}.get(
        tool, "Barman" if tool.startswith("Barman") else "wal-e")
    with open(f"{ROOT}/bin/first-{cluster}", "w") as f:
        f.write(f"{key}-{store}\n")


def all_pushes(cluster):
    """Back to pushing every segment everywhere (after the timed backups), deferred ones included."""
    with open(f"{ROOT}/bin/first-{cluster}", "w") as f:
        f.write("")
    run(["sh", f"{ROOT}/bin/archive-{cluster}-wal-e-WAL-E-pgbackrest-deferred.sh"])


def wait_archived(data, timeout=600):
    """Until the cluster's archiver has nothing left .ready: a timed backup then waits only for the
    WAL it writes itself, not for what earlier ones left in the archiver's queue."""
    t0 = time.monotonic()
    while any(f.endswith(".ready") for f in os.listdir(f"{data}/pg_wal/archive_status")):
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"the archiver of {data} has not caught up in {timeout} s")
        time.sleep(0.1)


def main_cluster(only):
    """The main cluster's sections, BENCH_RUNS times; returns the cluster's description."""
    global RUN
    main = f"{ROOT}/main"
    walsrc = f"{ROOT}/walsrc"
    fresh_dir(walsrc)
    init_cluster(main, MAIN_PORT, f"cp %p {walsrc}/%f")
    load_cluster(MAIN_PORT, SCALE, RANDOM_MB)
    time.sleep(2)
    for s in sorted(os.listdir(walsrc)):
        if re.fullmatch(r"[0-9A-F]{24}", s):
            shutil.copy(f"{walsrc}/{s}", f"{ROOT}/pushsrc/{s}")
    subprocess.run(["chown", "-R", "postgres:postgres", f"{ROOT}/pushsrc"], check=True)

    # From here on every WAL segment goes to all six repositories (backups wait for their WAL).
    script, _ = archive_to_all("main")
    set_archive_command(main, MAIN_PORT, f"{script} %p")
    psql(MAIN_PORT, "SELECT pg_switch_wal()")
    base_bytes = du(main, exclude="pg_wal")
    for RUN in range(RUNS):
        if "backup" in only:
            backups_and_restores(main, base_bytes)
        if "push" in only:
            single_pushes(f"{ROOT}/pushsrc")
    pg_stop(main)
    return f" Cluster: pgbench scale {SCALE} + {RANDOM_MB} MB of random bytea = {base_bytes / 1e6:.0f} MB without pg_wal."


if __name__ == "__main__":
    main()
