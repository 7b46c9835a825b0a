"""`vocdet runs --plot FILE.png`: the history's metrics run by run over time, for a person to read.

COCO mAP, AP50 and VOC07 mAP of each evaluated run at its start time (filled markers: blessed; hollow:
not), failed runs as crosses on the time axis naming the node, each pushed version labelled at its
run (grey when withdrawn), a blessed model the Pusher refused as such, and each rollback as a
vertical line naming the version it served again. matplotlib with its Agg backend: no display needed.
"""

from __future__ import annotations

import datetime
import os

from vocdet.pipeline.operations import lineage

LABELS = {"coco/AP": "COCO mAP@[.5:.95]", "coco/AP50": "COCO mAP@0.5", "voc/mAP50_11point": "VOC07 mAP@0.5"}


def output_path(path: str) -> str:
    """The file `plot` writes for `--plot path`, checked before anything is read.

    A name without an extension gets `.png` (matplotlib would add it unasked; here the message can name the
    file written). A folder is refused rather than guessed at: `DIR.png` beside it, or a name chosen inside
    it, would each surprise. So is a path that is not a regular file (a FIFO would block the write), or an
    extension matplotlib cannot write.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder (--plot); give a file name, e.g. {os.path.join(path, 'runs.png')}")
    if not os.path.splitext(path)[1]:
        path += ".png"
        if os.path.isdir(path):
            raise ValueError(f"{path}: is a folder (--plot); give a file name, e.g. {os.path.join(path, 'runs.png')}")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise ValueError(f"{path}: not a regular file (--plot); give a file name to write the picture to")
    formats = FigureCanvasBase.get_supported_filetypes()
    if os.path.splitext(path)[1][1:].lower() not in formats:
        raise ValueError(f"{path}: matplotlib cannot write a {os.path.splitext(path)[1]} file (--plot); give one of "
                         + ", ".join(f".{name}" for name in sorted(formats)))
    return path


def plot(records: list, path: str, withdrawn_versions: set[int] | None = None) -> str:
    """Writes the picture of `records` (`history.read`) to `path` (`output_path`'s); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates as mdates
    from matplotlib import pyplot as plt

    withdrawn_versions = withdrawn_versions or set()
    when = lambda record: datetime.datetime.fromtimestamp(record.started_ms / 1000, datetime.timezone.utc)  # noqa: E731
    runs = [r for r in records if r.kind == "run"]
    evaluated = [r for r in runs if r.metrics]
    figure, axes = plt.subplots(figsize=(10, 5.2), dpi=110)
    for name, color in zip(lineage.METRICS, ("tab:blue", "tab:orange", "tab:green")):
        points = [(when(r), r.metrics[name], bool(r.blessed)) for r in evaluated if name in r.metrics]
        if not points:
            continue
        axes.plot([p[0] for p in points], [p[1] for p in points], color=color, linewidth=1.2, label=LABELS[name])
        for x, y, blessed in points:
            axes.plot([x], [y], "o", color=color, markersize=7, markerfacecolor=color if blessed else "white")
    top = max([max(r.metrics.values()) for r in evaluated] + [0.1])
    for index, r in enumerate(evaluated):
        if r.pushed_version is not None and not r.already_serving:
            gone = r.pushed_version in withdrawn_versions
            label, color = f"pushed v{r.pushed_version}" + (" (withdrawn)" if gone else ""), "grey" if gone else "black"
        elif r.not_pushed_reason and r.blessed:
            label, color = "not pushed: " + ("withdrawn model" if "withdrawn" in r.not_pushed_reason else "see vocdet runs"), "firebrick"
        else:
            continue
        # Alternate heights, so labels of runs close in time do not cover each other.
        axes.annotate(label, (when(r), max(r.metrics.values())), textcoords="offset points", xytext=(0, 12 + 16 * (index % 2)),
                      ha="center", fontsize=8, color=color, bbox={"boxstyle": "round", "fc": "white", "ec": "lightgrey"},
                      arrowprops={"arrowstyle": "-", "color": "lightgrey"})
    for r in runs:
        if r.state == "FAILED":
            axes.plot([when(r)], [0], "x", color="red", markersize=10, markeredgewidth=2)
            axes.annotate(f"failed: {r.failed_node}", (when(r), 0), textcoords="offset points", xytext=(0, 8),
                          ha="center", fontsize=8, color="red")
    for r in records:
        if r.kind == "rollback":
            axes.axvline(when(r), color="purple", linestyle="--", linewidth=1)
            axes.annotate(f"rollback: v{r.rolled_back_to}\nserved again as v{r.pushed_version}", (when(r), top * 0.3),
                          textcoords="offset points", xytext=(-4, 0), fontsize=8, color="purple", ha="right", va="center",
                          bbox={"boxstyle": "round", "fc": "white", "ec": "plum"})
    axes.plot([], [], "o", color="grey", label="blessed (filled) / not (hollow)")
    axes.set_ylim(-0.05, top * 1.25)
    axes.set_ylabel("metric on the eval split")
    axes.set_xlabel("run start (UTC)")
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    axes.set_title("vocdet runs: evaluation, blessing, pushes and rollbacks")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
