"""WALE_GPG_KEY_ID: objects encrypted with gpg as WAL-E 1.1 encrypts them (after lzop, the `.lzo`
name kept), decrypted on reading; WAL-E and wal-e read each other's encrypted WAL."""
import json
import os
import subprocess

import pytest

from harness import chown_pg, run
from test_backups import start_recovered
from test_bad_input import SEG, make_segment
from test_wale_interop import peer, peer_env  # noqa: F401 (fixture)

KEY = "wale-test@example.invalid"
PARAMS = f"""%no-protection
Key-Type: eddsa
Key-Curve: ed25519
Key-Usage: sign
Subkey-Type: ecdh
Subkey-Curve: cv25519
Subkey-Usage: encrypt
Name-Real: wal-e test
Name-Email: {KEY}
Expire-Date: 0
%commit
"""


def new_gnupg_home(scratch, name, with_key):
    home = os.path.join(scratch, name)
    os.makedirs(home, mode=0o700)
    chown_pg(home)
    if with_key:
        params = os.path.join(scratch, name + ".params")
        with open(params, "w") as f:
            f.write(PARAMS)
        run(["gpg", "--batch", "--gen-key", params], user="postgres", env={"GNUPGHOME": home})
    return home


@pytest.fixture
def gnupg(scratch):
    """A keyring owned by postgres with one key (no passphrase), and an empty one."""
    homes = [new_gnupg_home(scratch, "gnupg", True), new_gnupg_home(scratch, "gnupg-empty", False)]
    yield homes
    for h in homes:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": h}, capture_output=True)


def is_openpgp(path):
    with open(path, "rb") as f:
        head = f.read(9)
    return bool(head) and head[0] & 0x80 != 0 and not head.startswith(b"\x89LZO")


def decrypt(home, path):
    return run(["gpg", "-d", "-q", "--batch", path], user="postgres", env={"GNUPGHOME": home}).stdout


def test_encrypted_archive_backup_and_point_in_time_restore(make_cluster, wale, archive, scratch, gnupg):
    home, empty = gnupg
    prefix, adir = archive
    enc = {"GNUPGHOME": home, "WALE_GPG_KEY_ID": KEY}
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'" + wale.command_line(prefix, "wal-push %p", enc) + "'",
             wal_keep_size="'4GB'", max_wal_size="'4GB'")
    c.start()
    c.pgbench("-i", "-s", "4", "-q")
    p = wale("backup-push", "--fast", c.data, prefix=prefix, env={**c.env(), **enc})
    assert p.returncode == 0, p.stderr.decode()
    name = p.stdout.decode().strip()
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('gpg_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1 AS x")
    c.wait_archived()

    # Every data object is OpenPGP, named as WAL-E names it; gpg then lzop give the WAL back.
    wal = sorted(os.listdir(os.path.join(adir, "wal_005")))
    assert wal and all(n.endswith(".lzo") for n in wal)
    bdir = os.path.join(adir, "basebackups_005", name)
    objects = [os.path.join(adir, "wal_005", n) for n in wal]
    for sub in ("tar_partitions", "wal_e_manifest"):
        objects += [os.path.join(bdir, sub, n) for n in os.listdir(os.path.join(bdir, sub))]
    assert all(is_openpgp(o) for o in objects), [o for o in objects if not is_openpgp(o)]
    first = wal[0][:24]
    plain = subprocess.run(["lzop", "-dc"], input=decrypt(home, objects[0]), capture_output=True, check=True).stdout
    assert plain == open(os.path.join(c.data, "pg_wal", first), "rb").read()
    # The sentinel stays readable (WAL-E's backup-list reads it without gpg).
    sentinel = json.load(open(os.path.join(adir, "basebackups_005", name + "_backup_stop_sentinel.json")))
    assert sentinel["wal_segment_backup_stop"]
    assert f"\r\n{name}\t" in wale("backup-list", prefix=prefix).stdout.decode()

    # Without the secret key: a clear error, nothing restored where PostgreSQL could start.
    denied = os.path.join(scratch, "denied")
    f = wale("backup-fetch", denied, name, prefix=prefix, env={"GNUPGHOME": empty})
    assert f.returncode == 1, f.stderr.decode()
    assert "gpg decryption of" in f.stderr.decode() and "secret key" in f.stderr.decode(), f.stderr.decode()
    assert not os.path.exists(os.path.join(denied, "global", "pg_control"))
    seg = os.path.join(scratch, "seg")
    f = wale("wal-fetch", first, seg, prefix=prefix, env={"GNUPGHOME": empty})
    # No secret key is a configuration error: as restore_command it must stop recovery (129), not
    # read as "not in the archive" (docs/exit-codes.md).
    assert f.returncode == 129 and "gpg decryption of" in f.stderr.decode(), f.stderr.decode()
    assert not os.path.exists(seg)

    # verify: with the secret key the backup (partitions, manifests, WAL) is proven; without it,
    # the same clear error as backup-fetch's, not a report of damage.
    v = wale("verify", name, "--json", prefix=prefix, env={"GNUPGHOME": home})
    assert v.returncode == 0, v.stdout.decode() + v.stderr.decode()
    [rep] = json.loads(v.stdout)
    assert rep["ok"] and rep["file_checksums"] and rep["wal_segments"] >= 1
    v = wale("verify", name, prefix=prefix, env={"GNUPGHOME": empty})
    assert v.returncode == 1 and "gpg decryption of" in v.stderr.decode() and "secret key" in v.stderr.decode(), v.stderr.decode()

    # With it (no key ID needed to read, as with WAL-E the keyring decides): restore and PITR.
    target = os.path.join(scratch, "restored")
    r = make_cluster(15, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "gpg_target", "--recovery-target-action", "promote",
             "--restore-command", wale.command_line(prefix, 'wal-fetch "%f" "%p"', {"GNUPGHOME": home}),
             target, name, prefix=prefix, env={"GNUPGHOME": home})
    assert f.returncode == 0, f.stderr.decode()
    assert "every file matched the backup manifest" in f.stderr.decode()
    start_recovered(c, r, target, expected)
    assert "restored log file" in open(r.log, errors="replace").read()


def test_wale_and_we_read_each_others_encrypted_wal(wale, archive, scratch, gnupg, peer):  # noqa: F811
    home, _ = gnupg
    prefix, adir = archive
    wal_dir = os.path.join(scratch, "pg_wal")
    os.makedirs(os.path.join(wal_dir, "archive_status"))  # WAL-E's wal-push lists it
    for d in (wal_dir, os.path.join(wal_dir, "archive_status")):
        chown_pg(d)
    ours, theirs = SEG, SEG[:-1] + "4"
    for n in (ours, theirs):
        make_segment(os.path.join(wal_dir, n), name=n)
        chown_pg(os.path.join(wal_dir, n))
    enc = {"GNUPGHOME": home, "WALE_GPG_KEY_ID": KEY}

    p = wale("wal-push", os.path.join(wal_dir, ours), prefix=prefix, env=enc)
    assert p.returncode == 0, p.stderr.decode()
    p = run([peer, "wal-push", os.path.join(wal_dir, theirs)], user="postgres",
            env={**peer_env(prefix), **enc}, check=False)
    assert p.returncode == 0, p.stderr.decode()
    for n in (ours, theirs):
        assert is_openpgp(os.path.join(adir, "wal_005", n + ".lzo"))

    out = os.path.join(scratch, "by_wale")
    p = run([peer, "wal-fetch", ours, out], user="postgres", env={**peer_env(prefix), **enc}, check=False)
    assert p.returncode == 0, p.stderr.decode()
    assert open(out, "rb").read() == open(os.path.join(wal_dir, ours), "rb").read()
    out = os.path.join(scratch, "by_us")
    p = wale("wal-fetch", theirs, out, prefix=prefix, env={"GNUPGHOME": home})
    assert p.returncode == 0, p.stderr.decode()
    assert open(out, "rb").read() == open(os.path.join(wal_dir, theirs), "rb").read()

    # Overwrite protection compares the decrypted content (the ciphertext differs every time).
    p = wale("wal-push", os.path.join(wal_dir, theirs), prefix=prefix, env=enc)
    assert p.returncode == 0 and "identical content" in p.stderr.decode(), p.stderr.decode()
    with open(os.path.join(wal_dir, theirs), "r+b") as f:
        f.seek(100)
        f.write(b"different")
    before = open(os.path.join(adir, "wal_005", theirs + ".lzo"), "rb").read()
    p = wale("wal-push", os.path.join(wal_dir, theirs), prefix=prefix, env=enc)
    assert p.returncode == 3, p.stderr.decode()
    assert open(os.path.join(adir, "wal_005", theirs + ".lzo"), "rb").read() == before


def test_a_key_gpg_cannot_encrypt_to_is_refused_before_writing(wale, archive, scratch, gnupg):
    home, empty = gnupg
    prefix, adir = archive
    path = os.path.join(scratch, SEG)
    make_segment(path)
    chown_pg(path)
    p = wale("wal-push", path, prefix=prefix, env={"GNUPGHOME": empty, "WALE_GPG_KEY_ID": KEY})
    assert p.returncode == 1
    err = p.stderr.decode()
    assert f"gpg encryption for key {KEY}" in err and "No public key" in err, err
    assert not os.path.exists(os.path.join(adir, "wal_005"))
    # A signing-only key (no encryption subkey) is refused too, by name.
    sign_only = os.path.join(scratch, "sign-only.params")
    with open(sign_only, "w") as f:
        f.write(PARAMS.replace(f"Name-Email: {KEY}", "Name-Email: sign-only@example.invalid")
                .replace("Subkey-Type: ecdh\nSubkey-Curve: cv25519\nSubkey-Usage: encrypt\n", ""))
    run(["gpg", "--batch", "--gen-key", sign_only], user="postgres", env={"GNUPGHOME": home})
    p = wale("wal-push", path, prefix=prefix, env={"GNUPGHOME": home, "WALE_GPG_KEY_ID": "sign-only@example.invalid"})
    assert p.returncode == 1 and "the key cannot encrypt" in p.stderr.decode(), p.stderr.decode()
    assert not os.path.exists(os.path.join(adir, "wal_005"))


def s3_object(s3_prefix, key):
    bucket, path = s3_prefix[len("s3://"):].split("/", 1)
    e = os.environ
    r = subprocess.run(["curl", "-s", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                        f"{e['WALE_TEST_S3_ACCESS_KEY']}:{e['WALE_TEST_S3_SECRET_KEY']}",
                        f"{e['WALE_TEST_S3_URL']}/{bucket}/{path}/{key}"], capture_output=True)
    assert r.returncode == 0, r
    return r.stdout


def test_encrypted_wal_on_s3(wale, s3_prefix, scratch, gnupg):
    home, _ = gnupg
    path = os.path.join(scratch, SEG)
    make_segment(path)
    chown_pg(path)
    enc = {"GNUPGHOME": home, "WALE_GPG_KEY_ID": KEY}
    p = wale("wal-push", path, prefix=s3_prefix, env=enc)
    assert p.returncode == 0, p.stderr.decode()
    stored = s3_object(s3_prefix, f"wal_005/{SEG}.lzo")
    assert stored[0] & 0x80 and not stored.startswith(b"\x89LZO")
    out = os.path.join(scratch, "back")
    p = wale("wal-fetch", SEG, out, prefix=s3_prefix, env={"GNUPGHOME": home})
    assert p.returncode == 0, p.stderr.decode()
    assert open(out, "rb").read() == open(path, "rb").read()
    # A repeated push is decided from the object's metadata (the raw segment's digest).
    p = wale("wal-push", path, prefix=s3_prefix, env=enc)
    assert p.returncode == 0 and "identical content" in p.stderr.decode(), p.stderr.decode()
    with open(path, "r+b") as f:
        f.seek(50)
        f.write(b"other bytes")
    p = wale("wal-push", path, prefix=s3_prefix, env=enc)
    assert p.returncode == 3, p.stderr.decode()
    assert s3_object(s3_prefix, f"wal_005/{SEG}.lzo") == stored
