"""Native encryption end to end: a real PostgreSQL archives and backs up holding only the public
key; a restore with the private key recovers to a point in time; without it, a clear error and
nothing PostgreSQL could read. The objects are decrypted independently of wal-e's code (Python's
`cryptography`) as a check of the documented format and key wrapping."""
import hashlib
import os
import subprocess

import pytest

from harness import run
from test_backups import backup_push, start_recovered
from test_verify import FileObjects, S3Objects


def keypair(wale, scratch, name):
    os.chmod(scratch, 0o777)
    priv = os.path.join(scratch, name + ".key")
    pub = priv + ".pub"
    p = wale("key", "generate", priv, pub)
    assert p.returncode == 0, p.stderr.decode()
    assert oct(os.stat(priv).st_mode & 0o777) == "0o600"
    assert wale("key", "generate", priv, pub + "2").returncode == 1  # never overwrites
    return priv, pub


def independent_decrypt(blob, private_key_file):
    """wal-e's native format (docs/design.md), read with Python's cryptography package."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    line = [l for l in open(private_key_file).read().splitlines() if l and not l.startswith("#")][0].split()
    priv = X25519PrivateKey.from_private_bytes(bytes.fromhex(line[3]))
    pub = priv.public_key().public_bytes_raw()
    kid = hashlib.sha256(b"wal-e key id v1" + pub).digest()[:8]
    assert blob[:8] == b"WALEENC\x01" and kid.hex() == line[2]
    log2, flags, n = blob[8], blob[9], blob[10]
    key = None
    for i in range(n):
        s = blob[11 + 88 * i: 11 + 88 * (i + 1)]
        if s[:8] == kid:
            kek = HKDF(hashes.SHA256(), 32, salt=s[8:40] + pub, info=b"wal-e native encryption v1 key wrap").derive(
                priv.exchange(X25519PublicKey.from_public_bytes(s[8:40])))
            key = AESGCM(kek).decrypt(bytes(11) + b"\x01", s[40:88], kid)
    assert key is not None
    body, trailer = blob[11 + 88 * n:], b""
    if flags & 1:
        body, trailer = body[:-40], body[-40:]
    framed, out, i = (1 << log2) + 16, b"", 0
    while True:
        final = len(body) <= framed
        piece, body = (body, b"") if final else (body[:framed], body[framed:])
        out += AESGCM(key).decrypt(i.to_bytes(11, "big") + (b"\x01" if final else b"\x00"), piece, blob[:10] + (trailer if final else b""))
        if final:
            return out, trailer
        i += 1


@pytest.mark.parametrize("store,version", [("file", 15), ("s3", 18)])
def test_native_encryption_archive_backup_and_point_in_time_restore(request, make_cluster, wale, scratch, store, version):
    if store == "file":
        prefix, adir = request.getfixturevalue("archive")
        objs = FileObjects(adir)
    else:
        prefix = request.getfixturevalue("s3_prefix")
        objs = S3Objects(prefix)
    priv, pub = keypair(wale, scratch, "ops")
    escrow_priv, escrow_pub = keypair(wale, scratch, "escrow")
    enc = {"WALE_ENCRYPTION_PUBLIC_KEYS": f"{pub},{escrow_pub}"}  # two recipients; no private key here
    c = make_cluster(version)
    c.initdb(archive_mode="on", archive_command="'" + wale.command_line(prefix, "wal-push %p", enc) + "'",
             wal_keep_size="'4GB'", max_wal_size="'4GB'")
    c.start()
    c.pgbench("-i", "-s", "2", "-q")
    name = backup_push(wale, c, prefix, "--fast", env=enc).stdout.decode().strip()
    c.pgbench("-c", "2", "-T", "2", "-n")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('enc_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1 AS x")
    seg = c.wait_archived()

    # Every data object is native; one WAL object decrypts independently to the lzop stream of
    # the segment, and its trailer holds the segment's SHA-256 and length.
    wal_key = f"wal_005/{name[5:29]}.lzo"
    blob = objs.get(wal_key)
    plain, trailer = independent_decrypt(blob, priv)
    raw = run(["lzop", "-dc"], input=plain).stdout
    assert trailer[:32] == hashlib.sha256(raw).digest() and int.from_bytes(trailer[32:], "big") == len(raw) == 16 << 20
    assert independent_decrypt(blob, escrow_priv)[0] == plain  # the escrow key reads it too
    bdir = f"basebackups_005/{name}/"
    for k in objs.keys(bdir + "tar_partitions") + objs.keys(bdir + "wal_e_manifest"):
        assert objs.get(k)[:8] == b"WALEENC\x01", k
    # The sentinel stays readable and names the key ids a restore needs (backup-list --json too).
    import json
    sentinel = json.loads(objs.get(f"basebackups_005/{name}_backup_stop_sentinel.json"))
    ids = sorted(open(k).read().split()[-2] for k in (pub, escrow_pub))
    assert sorted(sentinel["encryption_key_ids"]) == ids
    [listed] = json.loads(wale("backup-list", "--json", prefix=prefix).stdout)
    assert sorted(listed["encryption_key_ids"]) == ids
    # A re-push of an archived segment, without the private key: recognised as identical.
    p = wale("wal-push", os.path.join(c.data, "pg_wal", seg), prefix=prefix, env=enc)
    assert p.returncode == 0 and b"identical content" in p.stderr, p.stderr.decode()

    # Without the private key: clear errors, nothing where PostgreSQL could read it.
    denied = os.path.join(scratch, "denied")
    f = wale("backup-fetch", denied, name, prefix=prefix)
    assert f.returncode == 1 and "WALE_ENCRYPTION_PRIVATE_KEYS" in f.stderr.decode(), f.stderr.decode()
    assert not os.path.exists(os.path.join(denied, "global", "pg_control"))
    dest = os.path.join(scratch, "seg")
    f = wale("wal-fetch", name[5:29], dest, prefix=prefix)
    assert f.returncode == 129 and "WALE_ENCRYPTION_PRIVATE_KEYS" in f.stderr.decode(), f.stderr.decode()
    assert not os.path.exists(dest)
    # A private key of another pair: named by key id.
    other_priv, _ = keypair(wale, scratch, "other")
    f = wale("wal-fetch", name[5:29], dest, prefix=prefix, env={"WALE_ENCRYPTION_PRIVATE_KEYS": other_priv})
    assert f.returncode == 129 and "none of WALE_ENCRYPTION_PRIVATE_KEYS unwraps it" in f.stderr.decode(), f.stderr.decode()

    # With it: verify, restore and recover to the restore point.
    dec = {"WALE_ENCRYPTION_PRIVATE_KEYS": priv}
    v = wale("verify", name, prefix=prefix, env=dec)
    assert v.returncode == 0, v.stdout.decode() + v.stderr.decode()
    target = os.path.join(scratch, "restored")
    r = make_cluster(version, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "enc_target", "--recovery-target-action", "promote",
             "--restore-command", wale.command_line(prefix, 'wal-fetch "%f" "%p"', dec), target, name, prefix=prefix, env=dec)
    assert f.returncode == 0 and "every file matched the backup manifest" in f.stderr.decode(), f.stderr.decode()
    start_recovered(c, r, target, expected)
    assert "restored log file" in open(r.log, errors="replace").read()

    # Both encryptions at once are refused before anything is written.
    p = wale("wal-push", os.path.join(c.data, "pg_wal", seg), prefix=prefix, env={**enc, "WALE_GPG_KEY_ID": "x"})
    assert p.returncode == 1 and "choose one encryption" in p.stderr.decode()
