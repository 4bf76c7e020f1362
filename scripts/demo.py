"""The main job end to end on the embedded default: a throwaway PostgreSQL cluster whose
archive_command is wal-e into a local file:// store; WAL is generated under pgbench, every
archived segment is fetched back and compared byte for byte, and a copy of the cluster is
recovered through wal-fetch and its data compared with the original."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from harness import Cluster, WalE, chown_pg, make_scratch, run, sha256_file  # noqa: E402


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
        say("generating WAL: pgbench -i -s 10, then 10 s of pgbench with 2 clients")
        c.pgbench("-i", "-s", "10", "-q")
        base = os.path.join(scratch, "restored")
        run([c.bin("pg_basebackup"), "-D", base, "-X", "none", "-c", "fast"], user="postgres", env=c.env())
        c.pgbench("-c", "2", "-j", "2", "-T", "10", "-n")
        expected = c.table_checksums()
        t0 = time.time()
        last = c.wait_archived()
        segments = [s for s in c.wal_segments() if s <= last]
        say(f"{len(segments)} segments archived (archiver drained {time.time() - t0:.1f} s after the load)")

        stored = sum(os.path.getsize(os.path.join(archive, "wal_005", n)) for n in os.listdir(os.path.join(archive, "wal_005")))
        say(f"archive holds {stored / 1e6:.1f} MB for {len(segments) * 16.8:.0f} MB of WAL")
        out = os.path.join(scratch, "fetched")
        os.makedirs(out)
        chown_pg(out)
        for s in segments:
            p = wale("wal-fetch", "-p", "0", s, os.path.join(out, s), prefix=prefix)
            if p.returncode != 0 or sha256_file(os.path.join(out, s)) != sha256_file(os.path.join(c.data, "pg_wal", s)):
                say(f"FAILED: {s} did not come back identical\n{p.stderr.decode()}")
                return 1
            os.unlink(os.path.join(out, s))
        say(f"all {len(segments)} segments fetched back byte-identical")
        c.stop()

        say("recovering a copy of the cluster through restore_command = wal-e wal-fetch")
        with open(os.path.join(base, "postgresql.auto.conf"), "a") as f:
            f.write(f"port = {r.port}\narchive_mode = off\n")
            f.write("restore_command = '" + wale.command_line(prefix, 'wal-fetch "%f" "%p"') + "'\n")
        open(os.path.join(base, "recovery.signal"), "w").close()
        chown_pg(os.path.join(base, "recovery.signal"))
        t0 = time.time()
        r.start()
        r.wait_until("SELECT pg_is_in_recovery()", "f", timeout=600)
        say(f"recovery finished in {time.time() - t0:.1f} s")
        got = r.table_checksums()
        if got != expected:
            say(f"FAILED: restored data differs\nexpected {expected}\ngot {got}")
            return 1
        rows = ", ".join("%s=%s rows" % (k, v.split(":")[0]) for k, v in sorted(got.items()))
        say(f"restored data identical ({rows})")
        say("OK")
        return 0
    finally:
        r.stop("immediate")
        c.stop("immediate")
        if os.environ.get("WALE_KEEP_SCRATCH") != "1":
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
