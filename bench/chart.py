"""The bench's chart: the plugin next to the hand-wired baseline, per figure (PNG, for the README)."""

from __future__ import annotations

from pathlib import Path

# (title, unit, plugin figure, baseline figure, baseline label)
PAIRS = [
    ("cold start, wall", "s", "plugin_cold_wall_s", "handwired_wall_s", "hand-wired"),
    ("cold start, to first pass", "s", "plugin_cold_first_pass_s", "handwired_first_pass_s", "hand-wired"),
    ("reused start, wall", "s", "reuse_wall_s", "plugin_cold_wall_s", "plugin cold"),
    (".get() round trip, warm (median)", "ms", "warm_on_call_ms", "bare_median_ms", "bare kombu + driver"),
    ("per test, cleanup on, warm", "ms", "warm_on_per_test_ms", "bare_mean_ms", "bare kombu + driver"),
]


def write_chart(figures: dict, path: Path, title: str) -> Path | None:
    """Write the chart to ``path``; None (with no error) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    pairs = [pair for pair in PAIRS if figures[pair[2]]["median"] is not None and figures[pair[3]]["median"]]
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.0 * len(pairs), 3.4))
    for axis, (name, unit, ours, theirs, their_label) in zip(axes, pairs):
        values = [figures[ours]["median"], figures[theirs]["median"]]
        bars = axis.bar(["pytest-celery-astra", their_label], values, color=["#2b7bba", "#b0b0b0"])
        axis.bar_label(bars, labels=[f"{v:.1f} {unit}" if unit == "ms" else f"{v:.2f} {unit}" for v in values],
                       fontsize=8)
        axis.set_title(f"{name}\n{values[0] / values[1]:.2f}x", fontsize=9)
        axis.tick_params(axis="x", labelsize=7, rotation=15)
        axis.tick_params(axis="y", labelsize=7)
        axis.margins(y=0.2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
