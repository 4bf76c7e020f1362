"""The cost curve (BENCH_SCALES=10,60,300; off by default): one PostgreSQL 15 cluster per pgbench
scale (plus random bytes in proportion, as the main cluster), backed up and restored by wal-e and
pgBackRest lz4 (process-max 2) on file and S3, next to the floors of this machine at that size: a
cold read of the cluster, lzop on two cores, a durable write of the stored bytes, and the read and
the write together (what a backup does to the one disk); for restores, the durable write of the
cluster, lzop -d on two cores and both together with the cold read of the stored bytes. The fixed
cost and marginal rate (MB of cluster per second, per added MB) of each tool and floor come from a
least-squares line through the sizes; peak RSS per size shows whether memory stays flat. Called
from bench.py with the bench module's helpers; writes bench/results/scale-curve.json for
bench/plot.py."""
import json
import os
import shutil
import subprocess

PORT = 5614
TOOLS = ("wal-e", "pgBackRest lz4")


def run_scales(b, scales):
    points = []
    for scale in sorted(scales):
        name = f"scale{scale}"
        b.PORTS[name] = PORT
        data = f"{b.ROOT}/{name}"
        b.init_cluster(data, PORT, "/bin/true")  # the load's WAL is not archived: only the backups' own
        b.load_cluster(PORT, scale, scale * b.RANDOM_MB // b.SCALE)
        mb = b.du(data, exclude="pg_wal") / 1e6
        points.append((scale, mb))
        previous = None
        floor_parts = None
        for store in ("file", "s3"):
            # WAL goes to the measured store's repositories only; the previous store's are dropped
            # once the archiver has moved on to the new command (a 5 GB cluster's backups take
            # as much disk again).
            if previous:
                b.all_pushes(name)  # what the previous store's timed backups deferred, before its script is replaced
            script, confs = b.archive_to_all(name, stores=(store,), tools=TOOLS)
            b.set_archive_command(data, PORT, f"{script} %p")
            b.psql(PORT, "SELECT pg_switch_wal()")
            if previous:
                b.psql(PORT, "CHECKPOINT")
                floor_parts = keep_partitions(b, name)
                drop_repositories(b, name, *previous)
            for b.RUN in range(b.RUNS):
                measure(b, name, scale, data, mb, store, confs[store], floor_parts)
            previous = (store, confs[store])
        b.pg_stop(data)
        drop_repositories(b, name, *previous)
        shutil.rmtree(data)
        shutil.rmtree(floor_parts, ignore_errors=True)
    b.RUN = 0
    return " Cost curve: " + ", ".join(f"pgbench scale {s} ({mb:.0f} MB)" for s, mb in points) + "."


def measure(b, name, scale, data, mb, store, conf, floor_parts=None):
    """One repetition at one size on one store: each tool's backup and restore, and the floors: the
    machine's on file, the server's on S3 (curl moving wal-e's stored partitions, `floor_parts`)."""
    env = b.wale_env(store, name)
    sec = lambda kind: f"scale {scale}: {kind} ({store})"
    stored = {}
    for tool in TOOLS:
        b.psql(PORT, "CHECKPOINT")
        b.first_push(name, tool, store)
        b.wait_archived(data)
        b.drop_caches()
        if tool == "wal-e":
            before = repo_bytes(b, name, store, tool)
            f = b.timed(b.wale_cmd("backup-push", "--fast", data), env=env)
        else:
            before = repo_bytes(b, name, store, tool)
            f = b.timed(b.pgbr_cmd(conf, name, "backup", "--type=full"))
        stored[tool] = repo_bytes(b, name, store, tool) - before
        b.record(sec("backup-push"), tool, mb=mb, wall=f["wall"], mbs=mb / f["wall"], cpu=f["cpu"], rss_mib=f["rss_mib"],
                 stored_mb=stored[tool] / 1e6)
    if store == "file":
        backup_floors(b, sec("backup-push"), data, mb, stored["wal-e"])
    target = f"{b.ROOT}/restore"
    for tool in TOOLS:
        b.fresh_dir(target)
        b.drop_caches()
        if tool == "wal-e":
            f = b.timed(b.wale_cmd("backup-fetch", target, "LATEST"), env=env)
        else:
            f = b.timed(b.pgbr_cmd(conf, name, "restore", f"--pg1-path={target}", "--type=none"))
        b.record(sec("backup-fetch / restore"), tool, mb=mb, wall=f["wall"], mbs=mb / f["wall"], cpu=f["cpu"], rss_mib=f["rss_mib"])
        shutil.rmtree(target)
    if store == "file":
        restore_floors(b, sec("backup-fetch / restore"), name, mb)
    elif floor_parts:
        b.s3_floors(floor_parts, mb * 1e6, sections=(sec("backup-push"), sec("backup-fetch / restore")), mb=mb)


def keep_partitions(b, name):
    """wal-e's newest file:// backup's stored partitions, moved out of the repository before it is
    dropped: the bytes the S3 floors send. Returns their directory."""
    base = f"{b.ROOT}/store/wal-e-{name}/basebackups_005"
    newest = max((d for d in os.listdir(base) if os.path.isdir(f"{base}/{d}")), key=lambda d: os.path.getmtime(f"{base}/{d}"))
    kept = f"{b.ROOT}/floor-parts-{name}"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.move(f"{base}/{newest}/tar_partitions", kept)
    return kept


def repo_bytes(b, name, store, tool):
    if store == "file":
        path = f"{b.ROOT}/store/{'wal-e' if tool == 'wal-e' else 'pgbackrest'}-{name}"
        sub = "basebackups_005" if tool == "wal-e" else "backup"
        return b.du(f"{path}/{sub}") if os.path.isdir(f"{path}/{sub}") else 0
    if tool == "wal-e":
        return b.s3_size("bench-wal-e", f"{name}/basebackups_005")
    return b.s3_size("bench-pgbackrest", f"{name}/backup")


def sh(b, script):
    """Wall/CPU/RSS of a shell pipeline run as postgres."""
    return b.timed(["sh", "-c", script])


def durable_write(b, megabytes):
    return f"dd if=/dev/zero of={b.ROOT}/store/dd.tmp bs=1M count={int(megabytes)} conv=fsync status=none"


def backup_floors(b, section, data, mb, stored_bytes):
    files = f"find {data} -path {data}/pg_wal -prune -o -type f -print0"
    read = f"{files} | xargs -0 -P 2 -n 64 cat > /dev/null"
    write = durable_write(b, stored_bytes / 1e6)
    b.drop_caches()
    f = sh(b, read)
    b.record(section, "floor: cold read of the cluster (2 readers)", mb=mb, wall=f["wall"], mbs=mb / f["wall"], cpu=f["cpu"])
    sh(b, read)  # now cached: the codec's own ceiling, without the disk
    f = sh(b, f"{files} | xargs -0 -P 2 -n 256 sh -c 'cat \"$@\" | lzop -1 -c > /dev/null' sh")
    b.record(section, "floor: lzop -1 on 2 cores (cached)", mb=mb, wall=f["wall"], mbs=mb / f["wall"], cpu=f["cpu"])
    f = sh(b, write)
    b.record(section, "floor: durable write of the stored bytes", mb=mb, wall=f["wall"], mbs=mb / f["wall"], cpu=f["cpu"])
    b.drop_caches()
    f = sh(b, f"{read} & {write}; wait")
    b.record(section, "floor: cold read and durable write together", mb=mb, wall=f["wall"], mbs=mb / f["wall"], cpu=f["cpu"])
    os.unlink(f"{b.ROOT}/store/dd.tmp")


def restore_floors(b, section, name, mb):
    parts = f"find {b.ROOT}/store/wal-e-{name}/basebackups_005 -name '*.lzo' -print0"
    read = f"{parts} | xargs -0 -P 2 -n 16 cat > /dev/null"
    write = durable_write(b, mb)
    f = sh(b, write)
    b.record(section, "floor: durable write of the cluster", mb=mb, wall=f["wall"], mbs=mb / f["wall"], cpu=f["cpu"])
    sh(b, read)
    f = sh(b, f"{parts} | xargs -0 -P 2 -n 1 lzop -d -c > /dev/null")
    b.record(section, "floor: lzop -d on 2 cores (cached)", mb=mb, wall=f["wall"], mbs=mb / f["wall"], cpu=f["cpu"])
    b.drop_caches()
    f = sh(b, f"{read} & {write}; wait")
    b.record(section, "floor: cold read of the stored bytes and durable write together", mb=mb, wall=f["wall"], mbs=mb / f["wall"],
             cpu=f["cpu"])
    os.unlink(f"{b.ROOT}/store/dd.tmp")


def drop_repositories(b, name, store, conf):
    """Frees the disk before the next store or size."""
    if store == "file":
        for repo in ("wal-e", "pgbackrest"):
            shutil.rmtree(f"{b.ROOT}/store/{repo}-{name}", ignore_errors=True)
        return
    b.run(b.wale_cmd("delete", "--confirm", "everything"), env=b.wale_env(store, name), check=False)
    b.run(b.pgbr_cmd(conf, name, "stop"), check=False)
    b.run(b.pgbr_cmd(conf, name, "stanza-delete", "--force"), check=False)
    b.run(b.pgbr_cmd(conf, name, "start"), check=False)


def fit(points):
    """Least-squares wall = fixed + mb / rate over (mb, wall) points: (fixed seconds, marginal MB/s)."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else 0
    return my - slope * mx, (1 / slope if slope > 0 else float("inf"))


def slope_lines(b, agg):
    """The cost curve's summary: per store, kind and tool (or floor), the fixed cost and marginal rate
    through the medians at each size, peak RSS per size; wal-e's marginal rate against each peer's
    and against the slowest floor. Also writes bench/results/scale-curve.json."""
    curves = {}  # (kind, store) -> tool -> [(scale, mb, wall, rss)]
    for sec, tool, med, _ in agg:
        if not sec.startswith("scale "):
            continue
        head, rest = sec.split(": ", 1)
        kind, store = rest.rsplit(" (", 1)
        curves.setdefault((kind, store.rstrip(")")), {}).setdefault(tool, []).append(
            (int(head.split()[1]), med["mb"], med["wall"], med.get("rss_mib")))
    lines = ["## The cost curve: fixed cost and marginal rate", "",
             "A least-squares line `wall = fixed + MB / rate` through each tool's median at each size (BENCH_SCALES): "
             "`marginal MB/s` is what each added MB of cluster costs, the figure a large cluster lives with. Floors are "
             "fitted the same way; the binding floor is the slowest one that wal-e does not beat (one it beats "
             "measures a slower way of doing that step, not a limit).", ""]
    dump = []
    for (kind, store), tools in curves.items():
        sizes = sorted({p[0] for pts in tools.values() for p in pts})
        lines += [f"### {kind} ({store})", "",
                  "| tool | fixed_s | marginal_mbs | " + " | ".join(f"rss_mib @ scale {s}" for s in sizes) + " | wal-e marginal rate ÷ this |",
                  "|---" * (len(sizes) + 4) + "|"]
        fits = {t: fit([(p[1], p[2]) for p in pts]) for t, pts in tools.items() if len(pts) > 1}
        # A floor wal-e beats is no floor (dd's write-then-fsync is slower than writing behind as
        # wal-e does): the binding one is the slowest of those wal-e does not beat.
        ours = fits.get("wal-e", (0, 0))[1]
        floors = [t for t in fits if t.startswith("floor") and fits[t][1] >= 0.98 * ours]
        beaten = {t for t in fits if t.startswith("floor")} - set(floors)
        binding = min(floors, key=lambda t: fits[t][1]) if floors else None
        for tool, pts in tools.items():
            if tool not in fits:
                continue
            fixed, rate = fits[tool]
            rss = {p[0]: p[3] for p in pts}
            ratio = "" if tool == "wal-e" or "wal-e" not in fits or rate == float("inf") else f"{fits['wal-e'][1] / rate:.2f}×"
            label = tool + (" (binding)" if tool == binding else " (beaten by wal-e: not a floor)" if tool in beaten else "")
            shown = "— (no slope: sizes too close)" if rate == float("inf") else f"{rate:.0f}"
            lines.append(f"| {label} | {fixed:.2f} | {shown} | " + " | ".join(
                f"{rss[s]:.1f}" if rss.get(s) is not None else "" for s in sizes) + f" | {ratio} |")
            dump.append({"kind": kind, "store": store, "tool": tool, "fixed_s": fixed, "marginal_mbs": rate,
                         "points": [{"scale": p[0], "mb": p[1], "wall": p[2], "rss_mib": p[3]} for p in pts]})
        lines.append("")
    with open(f"{b.REPO}/bench/results/scale-curve.json", "w") as f:
        json.dump(dump, f, indent=1)
    return lines
