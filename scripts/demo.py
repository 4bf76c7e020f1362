"""The main job end to end on the embedded default: a throwaway PostgreSQL cluster archived by
wal-e to a local file:// store; a base backup taken with backup-push while pgbench writes; more
writes; a named restore point; more writes; backup-fetch LATEST into a new directory; recovery
through wal-fetch to the restore point; the restored data compared with the data at the target;
amcheck on the restored cluster; and every archived WAL segment fetched back and compared."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from harness import PG, Cluster, WalE, chown_pg, make_scratch, sha256_file  # noqa: E402


def say(msg):
    print(f"== {msg}", flush=True)


def main():
    version = int(os.environ.get("WALE_DEMO_PG", "15"))
    scratch = make_scratch("wal-e-demo-")
    wale = WalE(scratch)
    archive = os.path.join(scratch, "archive")
    prefix = "file://localhost" + archive
    say(f"scratch directory {scratch}; archive {prefix}; PostgreSQL {version}")
    c = Cluster(version, scratch, 25400, "primary")
    r = Cluster(version, scratch, 25401, "restored")
    try:
        c.initdb(archive_mode="on", archive_command="'" + wale.command_line(prefix, "wal-push %p") + "'",
                 wal_keep_size="'4GB'", max_wal_size="'4GB'")
        c.start()
        say("pgbench -i -s 10")
        c.pgbench("-i", "-s", "10", "-q")

        say("backup-push while pgbench writes (2 clients, 10 s)")
        load = subprocess.Popen([c.bin("pgbench"), "-c", "2", "-T", "10", "-n", "postgres"], env={**os.environ, **c.env()},
                                preexec_fn=lambda: (os.setgid(PG.pw_gid), os.setuid(PG.pw_uid)) and None,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        t0 = time.time()
        p = wale("backup-push", "--fast", c.data, prefix=prefix, env=c.env())
        if p.returncode != 0:
            say("FAILED: backup-push\n" + p.stderr.decode())
            return 1
        name = p.stdout.decode().strip()
        say(f"backup {name} taken in {time.time() - t0:.1f} s (load still running: {load.poll() is None})")
        load.wait()

        c.pgbench("-c", "2", "-T", "3", "-n")
        expected = c.table_checksums()
        c.psql("SELECT pg_create_restore_point('demo_target')")
        say("restore point demo_target recorded; writing more after it")
        c.pgbench("-c", "2", "-T", "3", "-n")
        c.psql("CREATE TABLE after_target AS SELECT 1")
        last = c.wait_archived()
        print(wale("backup-list", "--detail", prefix=prefix).stdout.decode().replace("\r\n", "\n"), end="")

        target = os.path.join(scratch, "restored")
        t0 = time.time()
        f = wale("backup-fetch", "--recovery-target-name", "demo_target", "--recovery-target-action", "promote",
                 target, "LATEST", prefix=prefix)
        if f.returncode != 0:
            say("FAILED: backup-fetch\n" + f.stderr.decode())
            return 1
        say(f"backup-fetch LATEST into {target} in {time.time() - t0:.1f} s (manifest verified)")
        for name_ in ("postgresql.conf", "pg_hba.conf"):  # excluded from backups, as in WAL-E
            shutil.copy(os.path.join(c.data, name_), os.path.join(target, name_))
            chown_pg(os.path.join(target, name_))
        with open(os.path.join(target, "postgresql.auto.conf"), "a") as conf:
            conf.write(f"port = {r.port}\narchive_mode = off\n")
        t0 = time.time()
        r.start()
        r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=600)
        say(f"recovery through wal-fetch to demo_target finished in {time.time() - t0:.1f} s")
        got = r.table_checksums()
        if got != expected or r.psql("SELECT to_regclass('after_target') IS NULL") != "t":
            say(f"FAILED: restored data differs from the data at the target\nexpected {expected}\ngot {got}")
            return 1
        rows = ", ".join("%s=%s rows" % (k, v.split(":")[0]) for k, v in sorted(got.items()))
        say(f"restored data identical to the data at the restore point ({rows})")
        r.psql("CREATE EXTENSION amcheck")
        r.psql("SELECT bt_index_check(c.oid, true) FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
               "WHERE a.amname = 'btree' AND c.relkind = 'i' AND c.relpersistence <> 't'")
        say("amcheck: every btree index of the restored cluster verified")

        segments = [s for s in c.wal_segments() if s <= last]
        out = os.path.join(scratch, "fetched")
        os.makedirs(out)
        chown_pg(out)
        for s in segments:
            p = wale("wal-fetch", "-p", "0", s, os.path.join(out, s), prefix=prefix)
            if p.returncode != 0 or sha256_file(os.path.join(out, s)) != sha256_file(os.path.join(c.data, "pg_wal", s)):
                say(f"FAILED: {s} did not come back identical\n{p.stderr.decode()}")
                return 1
            os.unlink(os.path.join(out, s))
        say(f"all {len(segments)} archived WAL segments fetched back byte-identical")
        say("OK")
        return 0
    finally:
        r.stop("immediate")
        c.stop("immediate")
        if os.environ.get("WALE_KEEP_SCRATCH") != "1":
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
