"""Plots bench/results/scale-curve.json (written by a BENCH_SCALES run) into scale-curve.png:
per section (backup-push and restore, file and S3) the throughput (MB of cluster per second) and the
peak RSS of each tool against the cluster's size; floors dashed. Run by bench/run.sh with a venv
that has matplotlib (PyPI)."""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
curves = json.load(open(os.path.join(results, "scale-curve.json")))
sections = []
for c in curves:
    if (c["kind"], c["store"]) not in sections:
        sections.append((c["kind"], c["store"]))
if not sections:
    sys.exit("scale-curve.json has no curve")
fig, axes = plt.subplots(len(sections), 2, figsize=(11, 3.2 * len(sections)), squeeze=False)
for row, (kind, store) in enumerate(sections):
    rate_ax, rss_ax = axes[row]
    for c in curves:
        if (c["kind"], c["store"]) != (kind, store):
            continue
        pts = sorted(c["points"], key=lambda p: p["mb"])
        mb = [p["mb"] / 1000 for p in pts]
        style = "--" if c["tool"].startswith("floor") else "-"
        rate_ax.plot(mb, [p["mb"] / p["wall"] for p in pts], style, marker="o",
                     label=f"{c['tool']} (marginal {c['marginal_mbs']:.0f} MB/s)")
        if not c["tool"].startswith("floor") and all(p["rss_mib"] is not None for p in pts):
            rss_ax.plot(mb, [p["rss_mib"] for p in pts], marker="o", label=c["tool"])
    rate_ax.set_title(f"{kind} ({store}): throughput")
    rate_ax.set_xlabel("cluster size (GB)")
    rate_ax.set_ylabel("MB/s")
    rate_ax.legend(fontsize=7)
    rss_ax.set_title(f"{kind} ({store}): peak RSS")
    rss_ax.set_xlabel("cluster size (GB)")
    rss_ax.set_ylabel("MiB")
    rss_ax.set_ylim(bottom=0)
    rss_ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(os.path.join(results, "scale-curve.png"), dpi=100)
print(os.path.join(results, "scale-curve.png"))
