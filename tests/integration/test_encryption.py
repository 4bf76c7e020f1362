"""Native encryption end to end: a real PostgreSQL archives and backs up holding only the public
key; a restore with the private key recovers to a point in time; without it, a clear error and
nothing PostgreSQL could read. The objects are decrypted independently of wal-e's code (Python's
`cryptography`) as a check of the documented format and key wrapping."""
import hashlib
import os
import shutil
import subprocess

import pytest
import xxhash

from harness import run
from test_backups import backup_push, start_recovered
from test_verify import prefix_and_objects


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
    size = 24 if flags & 2 else 40 if flags & 1 else 0  # XXH3-128 or (wal-e 1.2 and earlier) SHA-256, + length
    if size:
        body, trailer = body[:-size], body[-size:]
    framed, out, i = (1 << log2) + 16, b"", 0
    while True:
        final = len(body) <= framed
        piece, body = (body, b"") if final else (body[:framed], body[framed:])
        out += AESGCM(key).decrypt(i.to_bytes(11, "big") + (b"\x01" if final else b"\x00"), piece, blob[:10] + (trailer if final else b""))
        if final:
            return out, trailer
        i += 1


@pytest.mark.parametrize("store,version", [("file", 15), ("s3", 18), ("file", 18), ("s3", 15)])
def test_native_encryption_archive_backup_and_point_in_time_restore(request, make_cluster, wale, scratch, store, version):
    prefix, objs = prefix_and_objects(request, store)
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
    # the segment, and its trailer holds the segment's XXH3-128 and length.
    wal_key = f"wal_005/{name[5:29]}.lzo"
    blob = objs.get(wal_key)
    plain, trailer = independent_decrypt(blob, priv)
    raw = run(["lzop", "-dc"], input=plain).stdout
    assert blob[9] == 2 and trailer[:16] == xxhash.xxh3_128(raw).digest()
    assert int.from_bytes(trailer[16:], "big") == len(raw) == 16 << 20
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
    # A private key others can read is refused, and said once: the downloads its first use
    # cancelled are not reported as store failures being retried.
    loose = os.path.join(scratch, "loose.key")
    shutil.copy(priv, loose)
    os.chmod(loose, 0o644)
    loose_target = os.path.join(scratch, "loose")
    f = wale("backup-fetch", loose_target, name, prefix=prefix, env={"WALE_ENCRYPTION_PRIVATE_KEYS": loose})
    err = f.stderr.decode()
    assert f.returncode == 1 and f"the private key file {loose} is readable by other users" in err, err
    assert "retrying" not in err and "CancellationError" not in err, err
    assert not os.path.exists(os.path.join(loose_target, "global", "pg_control"))

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


@pytest.mark.parametrize("store", ["file", "s3"])
def test_key_rotation_rewraps_headers_only_and_restores_with_the_new_key_alone(request, make_cluster, wale, scratch, store):
    """Archive with key A, then key B; rewrap A -> B; restore and recover everything with B alone.
    Only headers change: every rewrapped object's body is byte for byte the same, and on S3 the
    bytes that crossed the wire (counted by a proxy) are a fraction of the objects' size."""
    import json
    import shutil
    from test_s3 import start_proxy
    prefix, objs = prefix_and_objects(request, store)
    a_priv, a_pub = keypair(wale, scratch, "a")
    b_priv, b_pub = keypair(wale, scratch, "b")
    a_id, b_id = (open(k).read().split()[-2] for k in (a_pub, b_pub))
    current = os.path.join(scratch, "current.pub")  # the archive_command's key: A, then B
    shutil.copy(a_pub, current)
    os.chmod(current, 0o644)
    enc = {"WALE_ENCRYPTION_PUBLIC_KEYS": current}
    c = make_cluster(15)
    c.initdb(archive_mode="on", archive_command="'" + wale.command_line(prefix, "wal-push %p", enc) + "'",
             wal_keep_size="'4GB'", max_wal_size="'4GB'")
    c.start()
    # ~24 MB of hex text that lzop barely compresses: a partition large enough for S3 to copy its body.
    c.psql("CREATE TABLE r AS SELECT g, md5(random()::text) || md5(random()::text) AS h FROM generate_series(1, 300000) g")
    name = backup_push(wale, c, prefix, "--fast", env=enc).stdout.decode().strip()
    c.pgbench("-i", "-s", "1", "-q")
    c.wait_archived()
    shutil.copy(b_pub, current)
    c.psql("CREATE TABLE written_with_b AS SELECT generate_series(1, 1000) AS x")
    expected = c.table_checksums()
    c.psql("SELECT pg_create_restore_point('rot_target')")
    c.psql("CREATE TABLE after_target AS SELECT 1 AS x")
    c.wait_archived()

    u = wale("key", "usage", "--json", prefix=prefix)
    assert u.returncode == 0, u.stderr.decode()
    before = json.loads(u.stdout)
    assert before["key_ids"][a_id] > 3 and before["key_ids"][b_id] >= 2, before
    # Remember every A object's body (everything after its header) to compare after the rewrap.
    keys = objs.keys("wal_005") + objs.keys(f"basebackups_005/{name}/tar_partitions") + objs.keys(f"basebackups_005/{name}/wal_e_manifest")
    bodies = {}
    for k in keys:
        blob = objs.get(k)
        if blob[:8] == b"WALEENC\x01" and a_id in (blob[11 + 88 * i: 19 + 88 * i].hex() for i in range(blob[10])):
            bodies[k] = blob[11 + 88 * blob[10]:]
    assert len(bodies) == before["key_ids"][a_id]
    total = sum(len(b) for b in bodies.values())
    assert max(len(b) for b in bodies.values()) > 12 << 20  # the big partition

    dry = wale("key", "rewrap", "--dry-run", "--json", "--from", a_priv, "--to", b_pub, prefix=prefix)
    assert dry.returncode == 0 and json.loads(dry.stdout)["rewrapped"] == len(bodies), dry.stderr.decode()
    env, proxy, counts = {}, None, os.path.join(scratch, "bytes.log")
    if store == "s3":
        os.environ["FAULTPROXY_BYTES"] = counts
        try:
            proxy, port = start_proxy("pass")
        finally:
            del os.environ["FAULTPROXY_BYTES"]
        env = {"WALE_S3_ENDPOINT": f"http+path://127.0.0.1:{port}"}
    try:
        r = wale("key", "rewrap", "--json", "--from", a_priv, "--to", b_pub, prefix=prefix, env=env)
    finally:
        if proxy:
            proxy.kill()
    assert r.returncode == 0, r.stderr.decode()
    report = json.loads(r.stdout)
    assert report["rewrapped"] == len(bodies) and report["key_ids"].get(a_id) is None, report
    for k, body in bodies.items():
        blob = objs.get(k)
        assert blob[11 + 88 * blob[10]:] == body, f"{k}: body changed"
        assert [blob[11 + 88 * i: 19 + 88 * i].hex() for i in range(blob[10])] == [b_id], k
    if store == "s3":
        wire = [tuple(map(int, l.split())) for l in open(counts)]
        sent, received = sum(w[0] for w in wire), sum(w[1] for w in wire)
        assert report["bytes_copied_in_store"] > 12 << 20, report
        # What the store copied never crossed the wire: everything sent is the rest, plus requests.
        assert sent <= total - report["bytes_copied_in_store"] + 4096 * len(wire), (sent, total, report)
        assert sent < total and received < total, (sent, received, total)
    after = json.loads(wale("key", "usage", "--json", prefix=prefix).stdout)
    assert a_id not in after["key_ids"] and after["key_ids"][b_id] == before["key_ids"][a_id] + before["key_ids"][b_id]
    # Run again: nothing left to do.
    again = wale("key", "rewrap", "--json", "--from", a_priv, "--to", b_pub, prefix=prefix)
    assert again.returncode == 0 and json.loads(again.stdout)["rewrapped"] == 0

    # A alone no longer reads the archive; B alone restores and recovers through WAL written with both.
    f = wale("wal-fetch", name[5:29], os.path.join(scratch, "seg"), prefix=prefix, env={"WALE_ENCRYPTION_PRIVATE_KEYS": a_priv})
    assert f.returncode == 129 and a_id not in f.stderr.decode().split("given:")[0], f.stderr.decode()
    dec = {"WALE_ENCRYPTION_PRIVATE_KEYS": b_priv}
    assert wale("verify", name, prefix=prefix, env=dec).returncode == 0
    target = os.path.join(scratch, "restored")
    rc = make_cluster(15, "restored")
    f = wale("backup-fetch", "--recovery-target-name", "rot_target", "--recovery-target-action", "promote",
             "--restore-command", wale.command_line(prefix, 'wal-fetch "%f" "%p"', dec), target, name, prefix=prefix, env=dec)
    assert f.returncode == 0, f.stderr.decode()
    start_recovered(c, rc, target, expected)
