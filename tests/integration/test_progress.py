"""The progress line of long commands, in a pseudo-terminal (it appears and updates) and with
stderr a file (absent unless --progress); the summary line every long command ends with; delete
--json's plan."""
import json
import os
import pty
import select
import subprocess

from harness import PG
from test_verify import backup_with_wal


# The line is redrawn every half second by default; the small backup below restores and
# verifies in a fraction of that (release and debug builds alike), so the tests redraw faster.
FAST_REDRAW = {"WALE_PROGRESS_INTERVAL": "0.02"}


def run_with_terminal(wale, args, prefix):
    """Runs wal-e as postgres with stderr on a pseudo-terminal; returns (status, what the terminal got)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALE_")}
    env.update(wale.env_prefix(prefix))
    env.update(FAST_REDRAW)
    p = subprocess.Popen([wale.path, *args], env=env, stdout=subprocess.DEVNULL, stderr=slave,
                         preexec_fn=lambda: (os.setgid(PG.pw_gid), os.setuid(PG.pw_uid)) and None)
    os.close(slave)
    got = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            got += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=300)
    os.close(master)
    return p.returncode, got.decode(errors="replace")


def test_progress_line_on_a_terminal_only(make_cluster, wale, archive, scratch):
    prefix, adir = archive
    c, name = backup_with_wal(make_cluster, wale, prefix)
    c.stop()
    os.chmod(scratch, 0o777)

    rc, tty = run_with_terminal(wale, ["backup-fetch", os.path.join(scratch, "r1"), name], prefix)
    assert rc == 0, tty
    lines = [l for l in tty.split("\r") if l.startswith("backup-fetch: ")]
    assert len(lines) >= 2, tty  # it updates
    assert " of " in lines[-1] and "/s" in lines[-1] and "partitions " in lines[-1], lines[-1]
    assert "bytes restored" in tty and "MiB/s" in tty  # the summary log line

    rc, tty = run_with_terminal(wale, ["verify", name], prefix)
    assert rc == 0 and f"\rverify {name}: " in tty, tty
    rc, tty = run_with_terminal(wale, ["verify", "--no-progress", name], prefix)
    assert rc == 0 and "\rverify" not in tty, tty

    # stderr a file: no progress line, unless asked for.
    p = wale("backup-fetch", os.path.join(scratch, "r2"), name, prefix=prefix, env=FAST_REDRAW)
    assert p.returncode == 0 and b"\r" not in p.stderr and b"bytes restored" in p.stderr, p.stderr.decode()
    p = wale("backup-fetch", "--progress", os.path.join(scratch, "r3"), name, prefix=prefix, env=FAST_REDRAW)
    assert p.returncode == 0 and b"\rbackup-fetch: " in p.stderr, p.stderr.decode()
    # --terse hides it on a terminal too.
    rc, tty = run_with_terminal(wale, ["--terse", "backup-fetch", os.path.join(scratch, "r4"), name], prefix)
    assert rc == 0 and "\rbackup-fetch" not in tty, tty

    # backup-push's summary: bytes read and stored, rate, duration.
    c.start()
    p = wale("backup-push", "--fast", c.data, prefix=prefix, env=c.env())
    assert p.returncode == 0 and b"bytes read, " in p.stderr and b" stored, " in p.stderr, p.stderr.decode()
    c.stop()

    # delete --json: the plan, the same in the dry run and the confirmed run.
    dry = wale("delete", "--json", "retain", "1", prefix=prefix)
    assert dry.returncode == 0, dry.stderr.decode()
    plan = json.loads(dry.stdout)
    assert plan["confirmed"] is False and plan["backups_deleted"] == [name] and len(plan["backups_kept"]) == 1
    assert plan["object_count"] == len(plan["objects"]) > 0 and {"kind", "key"} <= set(plan["objects"][0])
    done = wale("delete", "--confirm", "--json", "retain", "1", prefix=prefix)
    assert done.returncode == 0, done.stderr.decode()
    confirmed = json.loads(done.stdout)
    assert confirmed["confirmed"] is True and confirmed["objects"] == plan["objects"]
    assert not os.path.exists(os.path.join(adir, "basebackups_005", name))
