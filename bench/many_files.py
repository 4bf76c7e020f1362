"""The million-file case (BENCH_MANY_FILES=N, off by default): a stopped PostgreSQL 15 cluster with
N synthetic relation files (empty, as a freshly created table's are), once all in one database
directory and once spread over directories of 1000, backed up (--while-offline) to file:// and
restored by wal-e, and by pgBackRest with bundling (repo1-bundle=y) on the same directory: time,
time per file and peak RSS. Called from bench.py with the bench module's helpers."""
import os
import shutil
import time


def make_cluster(b, data, files, per_dir):
    """initdb, then `files` empty relation files: all in base/<postgres db> (per_dir = 0) or in
    extra database directories of `per_dir` files each."""
    b.fresh_dir(data)
    b.run([f"{b.PGBIN}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
    dbdir = os.path.join(data, "base", "5")  # the postgres database
    made = 0
    t0 = time.time()
    while made < files:
        d = dbdir if per_dir == 0 else os.path.join(data, "base", str(900000 + made // per_dir))
        os.makedirs(d, exist_ok=True)
        n = files - made if per_dir == 0 else min(per_dir, files - made)
        for i in range(n):
            os.close(os.open(os.path.join(d, str(1000000 + made + i)), os.O_CREAT | os.O_WRONLY, 0o600))
        made += n
    subprocess_chown(data)
    b.say(f"made {files} files in {time.time() - t0:.0f} s under {data}")


def subprocess_chown(path):
    import subprocess
    subprocess.run(["chown", "-R", "postgres:postgres", path], check=True)


def pgbr_offline_conf(b, data, name):
    path = f"{b.ROOT}/pgbackrest-files-{name}.conf"
    with open(path, "w") as f:
        f.write(f"[global]\nrepo1-type=posix\nrepo1-path={b.ROOT}/store/pgbackrest-files-{name}\nrepo1-retention-full=99\n"
                f"repo1-bundle=y\nlog-level-console=warn\nlog-level-file=off\nlock-path={b.ROOT}/run\n"
                f"process-max=2\ncompress-type=lz4\n\n[files]\npg1-path={data}\n")
    shutil.chown(path, "postgres", "postgres")
    b.mkdir_pg(f"{b.ROOT}/run")
    return path


def run_many_files(b, files):
    for layout, per_dir in (("one directory", 0), ("directories of 1000", 1000)):
        data = f"{b.ROOT}/files"
        make_cluster(b, data, files, per_dir)
        section = f"{files} files, {layout} (file)"
        store = f"file://localhost{b.ROOT}/store/wal-e-files"
        shutil.rmtree(f"{b.ROOT}/store/wal-e-files", ignore_errors=True)
        env = {"WALE_FILE_PREFIX": store, "WALE_LOG_DESTINATION": "stderr", "PG_CONTROLDATA": f"{b.PGBIN}/pg_controldata"}
        b.drop_caches()
        f = b.timed(b.wale_cmd("backup-push", "--while-offline", data), env=env)
        b.record(f"backup-push, {section}", "wal-e", wall=f["wall"], us_per_file=f["wall"] / files * 1e6, rss_mib=f["rss_mib"])
        target = f"{b.ROOT}/restore"
        b.fresh_dir(target)
        b.drop_caches()
        g = b.timed(b.wale_cmd("backup-fetch", target, "LATEST"), env=env)
        restored = sum(len(fs) for _, _, fs in os.walk(target))
        b.record(f"backup-fetch, {section}", "wal-e", wall=g["wall"], us_per_file=g["wall"] / files * 1e6, rss_mib=g["rss_mib"],
                 files_restored=restored)
        # verify checks every file against the manifest without writing: the same bounded memory.
        b.drop_caches()
        v = b.timed(b.wale_cmd("verify", "LATEST"), env=env)
        b.record(f"backup-fetch, {section}", "wal-e verify", wall=v["wall"], us_per_file=v["wall"] / files * 1e6, rss_mib=v["rss_mib"])

        conf = pgbr_offline_conf(b, data, str(per_dir))
        shutil.rmtree(f"{b.ROOT}/store/pgbackrest-files-{per_dir}", ignore_errors=True)
        ok = b.run(b.pgbr_cmd(conf, "files", "stanza-create", "--no-online"), check=False).returncode == 0
        if ok:
            b.drop_caches()
            f = b.timed(b.pgbr_cmd(conf, "files", "backup", "--type=full", "--no-online"), check=False)
            if f["rc"] == 0:
                b.record(f"backup-push, {section}", "pgBackRest lz4 bundle", wall=f["wall"], us_per_file=f["wall"] / files * 1e6,
                         rss_mib=f["rss_mib"])
                b.fresh_dir(target)
                b.drop_caches()
                g = b.timed(b.pgbr_cmd(conf, "files", "restore", f"--pg1-path={target}", "--type=none"), check=False)
                if g["rc"] == 0:
                    b.record(f"backup-fetch, {section}", "pgBackRest lz4 bundle", wall=g["wall"],
                             us_per_file=g["wall"] / files * 1e6, rss_mib=g["rss_mib"])
            else:
                b.say("pgBackRest offline backup failed; see bench.log")
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
