"""The folder a tool writes its files into (`vocdet predict --out`, `vocdet evaluate --out`), claimed before any write.

Those tools write files of fixed names (`<image stem>.png`, `metrics.json`, `report.md`): in a folder
of the person's own, they would overwrite a photo called `dog.png` or a `report.md` of theirs. So a
tool writes only into a folder that is new, empty, or marked as its own by an earlier run (`MARK_FILE`,
naming the tool), and never into a folder that holds one of its inputs. Anything else is one line,
before the first write, as ultralytics' `runs/` and TFX's artefact folders avoid the question by
always writing somewhere new.
"""

from __future__ import annotations

import os

# Written into a folder a tool claimed; its content names the tool.
MARK_FILE = ".vocdet-output"


class FolderNotOurs(ValueError):
    """An output folder a tool must not write into; the message names it and the flag."""


def claim(folder: str, tool: str, flag: str = "--out", inputs: list[str] = ()) -> None:
    """Makes `folder` the output of `tool` (e.g. "vocdet predict"), or raises FolderNotOurs; see the module docstring."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise FolderNotOurs(f"{folder}: {flag} is a file, not a folder; give a new folder")
    resolved = os.path.realpath(folder)
    inside = next((path for path in inputs if os.path.dirname(os.path.realpath(path)) == resolved), None)
    if inside:
        raise FolderNotOurs(f"{folder}: {flag} holds the input {inside}; {tool} would write beside your files: "
                            "give a folder of its own")
    mark = os.path.join(folder, MARK_FILE)
    if os.path.isdir(folder) and not os.path.lexists(mark):
        entries = sorted(os.listdir(folder))
        if entries:
            raise FolderNotOurs(f"{folder}: {flag} holds {len(entries)} entries {tool} did not write (e.g. {entries[0]}); "
                                "it writes only into a new or empty folder, or one it wrote before: give another")
    os.makedirs(folder, exist_ok=True)
    if not os.path.lexists(mark):
        with open(mark, "w") as handle:
            handle.write(f"{tool}\n")
