"""The benchmark's chart (PNG; needs matplotlib)."""
from __future__ import annotations

import textwrap

from .report import gemm_untrusted

TITLE_CHARACTERS = 150  # a title line at fontsize 9 in the 13-inch figure: about 7 pixels a character at 100 dpi


def plot(data, path) -> None:
    """Throughput and fraction of the GEMM rate per configuration and implementation (PNG); a "% of GEMM" the table
    shows as ">100%" (report.gemm_untrusted) gets no bar."""
    from ..atomic import new_figure, save_figure

    results = data["results"]
    groups = []
    for r in results:
        g = (r["config"], r["backend"])
        if g not in groups:
            groups.append(g)
    impls = []
    for r in results:
        if (r["impl"], r["label"]) not in impls:
            impls.append((r["impl"], r["label"]))
    fig = new_figure(figsize=(13, 4.8))
    axes = fig.subplots(1, 2)
    width = 0.8 / max(1, len(impls))
    for j, (impl, label) in enumerate(impls):
        xs, rate, frac = [], [], []
        for i, g in enumerate(groups):
            for r in results:
                if (r["config"], r["backend"]) == g and r["impl"] == impl and r["label"] == label:
                    xs.append(i + (j - (len(impls) - 1) / 2) * width)
                    rate.append(r["samples_per_s"])
                    frac.append(float("nan") if gemm_untrusted(r) else 100 * r["fraction_of_gemm"])
        axes[0].bar(xs, rate, width, label=label)
        axes[1].bar(xs, frac, width, label=label)
    names = [f"{c}\n[{b}]" for c, b in groups]
    for ax, title in ((axes[0], "training samples/s (log)"), (axes[1], "% of the measured GEMM rate")):
        ax.set_xticks(range(len(groups)), names)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].axhline(100, color="k", lw=0.8, ls="--")
    axes[1].legend(fontsize=7, loc="upper left")
    s = data["setup"]
    # wrapped: a CPU's BLAS words (its thread counts for a small fit and an ensemble) ran past both edges
    title = f"gpunn bench, {s['date']}: {s['machine']} ({s['cores']} cores), {s['blas']}"
    fig.suptitle(textwrap.fill(title, TITLE_CHARACTERS), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
