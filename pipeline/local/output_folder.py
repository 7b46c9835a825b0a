"""Where a run on this machine may write, checked before anything is written: never into the person's data.

`vocdet run` and `vocdet ingest` write under `--output` (the lock, `metadata.sqlite`, `pipeline_root/`,
`data-root/`, `serving/`) and the Pusher writes, and prunes, versions in the serving folder. An
`--output` that is the file system's root or a file, that is (or is inside) a `--data` folder, or that
holds a `--data` folder where vocdet writes (its `data-root/` above all, which each run rebuilds), and
a serving folder inside (or around) a `--data` folder, are each refused in one line before the
first write. Paths are compared as the kernel resolves them (links followed), so a link is no way round.
"""

from __future__ import annotations

import os

from vocdet.pipeline.config import PipelineConfig
from vocdet.pipeline.data.root import DATA_ROOT_DIR
from vocdet.pipeline.local.output_lock import LOCK_FILE


class UnsafeOutput(ValueError):
    """An output or serving folder that would write into the person's data, or outside any folder: one line."""


def check(config: PipelineConfig) -> None:
    """`run` and `ingest`: `config.output_dir` and `config.serving_dir` against `config.data.data_dirs`."""
    written = {
        os.path.join(config.output_dir, DATA_ROOT_DIR): "its data root of links, rebuilt each run",
        config.pipeline_root: "TFX's pipeline root",
        config.metadata_path: "its ML Metadata store",
        os.path.join(config.output_dir, LOCK_FILE): "its lock",
    }
    check_paths(config.output_dir, config.data.data_dirs, written, config.serving_dir,
                "push.serving_dir, --serving-dir" if config.push.serving_dir else "")


def check_paths(output_dir: str, data_dirs: list[str], written: dict[str, str] | None = None,
                serving_dir: str | None = None, serving_setting: str = "") -> None:
    """Raises UnsafeOutput for the first unsafe pair; see the module docstring.

    `written` maps the paths vocdet writes under `output_dir` to what they are; None: every path under
    it but the generated sample (`sample-data/`) counts as written (`run --package`'s folders).
    """
    output = _resolved(output_dir)
    if output == os.sep:
        raise UnsafeOutput(f"{output_dir}: --output is the file system's root; vocdet writes its folders and store "
                           "into --output: give a folder of its own")
    blocking = _first_existing(output)
    if not os.path.isdir(blocking):
        where = "is a file" if blocking == output else f"is under {blocking}, which is a file"
        raise UnsafeOutput(f"{output_dir}: --output {where}, not a folder; give a folder (vocdet makes it if missing)")
    if written is None:
        sample = os.path.join(output, "sample-data")
        under_output = lambda path: _within(path, output) and not _within(path, sample)  # noqa: E731
    for data_dir in data_dirs:
        data = _resolved(data_dir)
        if _within(output, data):
            where = "is the --data folder" if output == data else f"is inside the --data folder {data_dir}"
            raise UnsafeOutput(f"{output_dir}: --output {where}; vocdet would write its outputs into your data: "
                               "give an --output outside it")
        if written is None:
            if under_output(data):
                raise UnsafeOutput(f"{data_dir}: this --data folder is inside --output {output_dir}, where vocdet writes "
                                   "its folders; move the data, or give another --output")
            continue
        for path, what in written.items():
            if _within(data, _resolved(path)):
                raise UnsafeOutput(
                    f"{data_dir}: this --data folder is {'' if data == _resolved(path) else 'inside '}{path}, "
                    f"where vocdet writes {what}; move the data, or give another --output"
                )
        if serving_dir and "://" not in serving_dir:
            serving = _resolved(serving_dir)
            setting = f" ({serving_setting})" if serving_setting else ""
            if _within(serving, data):
                raise UnsafeOutput(
                    f"{serving_dir}: the serving folder{setting} is {'' if serving == data else 'inside '}the --data "
                    f"folder {data_dir}; the Pusher writes and prunes versions there: choose a serving folder outside it"
                )
            if _within(data, serving):
                raise UnsafeOutput(
                    f"{data_dir}: this --data folder is inside the serving folder {serving_dir}{setting}, where the "
                    "Pusher writes and prunes versions; move the data, or choose another serving folder"
                )


def _resolved(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _within(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or under it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _first_existing(path: str) -> str:
    """`path`, or its nearest ancestor that exists."""
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path
