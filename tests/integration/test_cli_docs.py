"""The command line's own documentation: the man page in docs/man is the one the manual generator
makes from today's command tree (a flag added without regenerating it fails here), and the shell
completion scripts the README tells users to install are produced for bash, zsh and fish."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_man_page_is_current(scratch):
    out = os.path.join(scratch, "wal-e.1")
    helps = os.path.join(scratch, "help")
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen-manual.sh"), os.environ["WALE_BIN"]],
                       env={**os.environ, "MANUAL_OUT": out, "HELP_OUT": helps}, capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    fresh = open(out).read()
    kept = open(os.path.join(ROOT, "docs", "man", "wal-e.1")).read()
    assert ".Nm wal-e" in fresh and "wal-fetch" in fresh
    assert fresh == kept, "docs/man/wal-e.1 is stale: run scripts/gen-manual.sh and commit it"

    # The help snapshots: one per command, each current.
    kept_dir = os.path.join(ROOT, "docs", "help")
    names = sorted(os.listdir(helps))
    assert sorted(os.listdir(kept_dir)) == names, "docs/help is stale: run scripts/gen-manual.sh and commit it"
    for cmd in ("wal-push", "wal-fetch", "backup-push", "backup-fetch", "backup-list", "delete", "verify", "wal-verify", "status", "check"):
        assert cmd + ".txt" in names, cmd
    for n in names:
        text = open(os.path.join(helps, n)).read()
        assert text.startswith("OVERVIEW: ") and "USAGE: wal-e" in text, n
        assert text == open(os.path.join(kept_dir, n)).read(), f"docs/help/{n} is stale: run scripts/gen-manual.sh and commit it"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell):
    p = subprocess.run([os.environ["WALE_BIN"], "--generate-completion-script", shell], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    text = p.stdout.decode()
    for command in ("wal-push", "wal-fetch", "backup-push", "backup-fetch", "backup-list", "delete"):
        assert command in text, (shell, command)
