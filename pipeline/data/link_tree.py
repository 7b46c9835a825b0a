"""A folder vocdet builds of folders, symbolic links and small text files, and rebuilds touching only what it made.

`<output>/data-root` is such a folder (`layout.make_data_root`). Rebuilt each run, it must lose
what an earlier run's longer `--data` list left (ExampleGen would read it too), yet the same path
could hold anything: a user's dataset that happens to be there, a file put there by hand. So,
like a package manager's list of installed files, vocdet writes a record of every entry it makes
(`RECORD_FILE`, in the folder) and removes or replaces only what that record lists:

- a folder only when empty (`os.rmdir`, never a recursive delete), a link only as a link (its
  target stays), a text file only while it holds the bytes vocdet wrote;
- anything in the folder that the record does not list is refused in one line, before anything is
  written: a folder that is not empty and holds no record (somebody's data) is never adopted, unless
  every entry in it has the exact shape an earlier vocdet, which kept no record, built there (the
  caller's `legacy` test: folders, links and its own list files, nothing else);
- the record is written before the entries it lists are made, and text files are written beside
  themselves and renamed, so a build killed part-way leaves nothing unrecorded and no half file;
- an entry already as wanted is left untouched, so its mtime holds and with it TFX's input
  fingerprint (paths, sizes, mtimes) and its cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable
import json
import os
import stat

from vocdet.components import safe_files

# The record of what vocdet made, at the top of the folder it built.
RECORD_FILE = ".vocdet-made.json"
# What the record says it is; a file of that name saying anything else is not vocdet's.
_RECORD_FORMAT = "vocdet link tree 1"
# A text file (the record too) is written under this suffix beside itself, then renamed over it.
_PARTIAL_SUFFIX = ".vocdet-partial"
# Lists of image ids are small; a larger file at a text file's path is not one vocdet wrote.
_TEXT_MAX_BYTES = 256 << 20
_RECORD_MAX_BYTES = 256 << 20

FOLDER, LINK, TEXT = "folder", "link", "text"
_OTHER = "other"  # on disk: a FIFO, a socket, a device: never vocdet's


class NotMadeByVocdet(ValueError):
    """The folder holds something vocdet did not record making: one line naming it."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One wanted entry: a folder, a link to `value`, or a text file holding `value`."""

    kind: str
    value: str = ""


def folder() -> Entry:
    return Entry(FOLDER)


def link(target: str) -> Entry:
    return Entry(LINK, target)


def text(content: str) -> Entry:
    return Entry(TEXT, content)


def build(root: str, wanted: dict[str, Entry], flag: str = "--output",
          legacy: Callable[[str, str], bool] | None = None) -> None:
    """Makes `root` hold exactly `wanted` ({path relative to root: entry}); see the module docstring.

    A parent of every entry must be wanted too. `flag` names the option that chose `root`, for the message.
    `legacy(path, kind)` says whether an entry of a folder without a record has the shape an earlier
    vocdet made; a folder whose every entry has it is adopted (recorded as it is) instead of refused.
    """
    if os.path.lexists(root) and not os.path.isdir(root):
        raise NotMadeByVocdet(f"{root}: a file, not a folder; vocdet builds a folder of links there: move it, or give "
                              f"another {flag}")
    record = _read_record(root)
    present = _present(root)
    if record is None and legacy is not None and all(legacy(path, kind) for path, kind in present.items()):
        record = _adopted(root, present)
    foreign = sorted(path for path, kind in present.items() if not _recorded(record, root, path, kind))
    if foreign:
        raise NotMadeByVocdet(_foreign_line(root, foreign, present, record is None, flag))
    new_record = _record_of(wanted)
    os.makedirs(root, exist_ok=True)
    _write_record(root, _merged(record or _empty_record(), new_record))  # recorded before it is made
    for path in sorted(present, key=_depth, reverse=True):  # deepest first: a folder is empty when its turn comes
        entry = wanted.get(path)
        if entry is not None and entry.kind == TEXT and present[path] == TEXT:
            continue  # rewritten in place below, only if its text changed
        if entry is None or not _holds(os.path.join(root, path), present[path], entry):
            _remove(os.path.join(root, path), present[path])
    for path in sorted(wanted, key=_depth):  # shallowest first: a parent is a real folder before its children
        _make(os.path.join(root, path), wanted[path])
    _write_record(root, new_record)


def _adopted(root: str, present: dict[str, str]) -> dict:
    """A record of what is there now, for a folder an earlier vocdet built without keeping one."""
    record = _empty_record()
    record["folders"] = {path for path, kind in present.items() if kind == FOLDER}
    record["links"] = {path for path, kind in present.items() if kind == LINK}
    record["texts"] = {path: [_digest(os.path.join(root, path))] for path, kind in present.items() if kind == TEXT}
    return record


def _depth(path: str) -> int:
    return path.count(os.sep)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return LINK
    if stat.S_ISDIR(mode):
        return FOLDER
    return TEXT if stat.S_ISREG(mode) else _OTHER


def _present(root: str) -> dict[str, str]:
    """{path relative to root: kind} of everything in `root`, links not followed (a link is a leaf)."""
    found: dict[str, str] = {}
    if not os.path.isdir(root):
        return found
    for parent, folders, files in os.walk(root):  # os.walk lists a link to a folder but does not enter it
        for name in folders + files:
            path = os.path.relpath(os.path.join(parent, name), root)
            if path not in (RECORD_FILE, RECORD_FILE + _PARTIAL_SUFFIX):
                found[path] = _kind(os.lstat(os.path.join(parent, name)).st_mode)
    return found


def _digest(path: str) -> str | None:
    """sha256 of a regular file of at most `_TEXT_MAX_BYTES`; None for anything else."""
    try:
        return hashlib.sha256(safe_files.read_bytes(path, _TEXT_MAX_BYTES)).hexdigest()
    except (safe_files.UnsafeFileError, OSError):
        return None


def _recorded(record: dict | None, root: str, path: str, kind: str) -> bool:
    """Whether the entry on disk is one vocdet made: recorded as that kind (a text file: with those bytes)."""
    if record is None or kind == _OTHER:
        return False
    if kind == FOLDER:
        return path in record["folders"]
    if kind == LINK:
        return path in record["links"]
    if path.endswith(_PARTIAL_SUFFIX) and path[: -len(_PARTIAL_SUFFIX)] in record["texts"]:
        return True  # a text file a killed build was writing
    return path in record["texts"] and _digest(os.path.join(root, path)) in record["texts"][path]


def _holds(path: str, kind: str, entry: Entry) -> bool:
    """Whether the entry on disk (vocdet's) is already as wanted."""
    if kind != entry.kind:
        return False
    return entry.kind != LINK or os.readlink(path) == entry.value


def _remove(path: str, kind: str) -> None:
    if kind == FOLDER:
        os.rmdir(path)  # empty by now: its entries went first; never a recursive delete
    else:
        os.unlink(path)  # a link (its target stays) or a text file vocdet wrote


def _make(path: str, entry: Entry) -> None:
    if entry.kind == FOLDER:
        if not os.path.isdir(path) or os.path.islink(path):
            os.mkdir(path)
    elif entry.kind == LINK:
        if not os.path.islink(path):
            os.symlink(entry.value, path)
    elif _digest(path) != _text_digest(entry.value) or os.path.islink(path):
        _write_text(path, entry.value)


def _text_digest(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def _write_text(path: str, content: str) -> None:
    partial = path + _PARTIAL_SUFFIX
    with open(partial, "w") as handle:
        handle.write(content)
    os.replace(partial, path)


def _empty_record() -> dict:
    return {"format": _RECORD_FORMAT, "folders": [], "links": [], "texts": {}}


def _record_of(wanted: dict[str, Entry]) -> dict:
    record = _empty_record()
    for path, entry in sorted(wanted.items()):
        if entry.kind == TEXT:
            record["texts"][path] = [_text_digest(entry.value)]
        else:
            record["folders" if entry.kind == FOLDER else "links"].append(path)
    return record


def _merged(old: dict, new: dict) -> dict:
    """Both records' entries: what is on disk while a build moves from one to the other."""
    texts = {path: sorted(set(old["texts"].get(path, [])) | set(new["texts"].get(path, [])))
             for path in sorted(set(old["texts"]) | set(new["texts"]))}
    return {"format": _RECORD_FORMAT, "folders": sorted(set(old["folders"]) | set(new["folders"])),
            "links": sorted(set(old["links"]) | set(new["links"])), "texts": texts}


def _read_record(root: str) -> dict | None:
    """The record in `root`; an empty one for a folder that is missing or empty; None for one without a record."""
    path = os.path.join(root, RECORD_FILE)
    if not os.path.lexists(path):
        return _empty_record() if not os.path.isdir(root) or not os.listdir(root) else None
    content = safe_files.read_json(path, _RECORD_MAX_BYTES)
    valid = (
        isinstance(content, dict) and content.get("format") == _RECORD_FORMAT
        and all(isinstance(content.get(key), list) and all(isinstance(p, str) for p in content[key])
                for key in ("folders", "links"))
        and isinstance(content.get("texts"), dict)
        and all(isinstance(d, list) and all(isinstance(h, str) for h in d) for d in content["texts"].values())
    )
    if not valid:
        raise NotMadeByVocdet(f"{path}: not the record vocdet writes of what it made there ({_RECORD_FORMAT}); "
                              "vocdet will not touch the folder: move it away")
    return {"format": _RECORD_FORMAT, "folders": set(content["folders"]), "links": set(content["links"]),
            "texts": content["texts"]}


def _write_record(root: str, record: dict) -> None:
    content = json.dumps({"format": _RECORD_FORMAT, "folders": sorted(record["folders"]),
                          "links": sorted(record["links"]), "texts": record["texts"]}, indent=1, sort_keys=True)
    path = os.path.join(root, RECORD_FILE)
    if _digest(path) != _text_digest(content):
        _write_text(path, content)


def _foreign_line(root: str, foreign: list[str], present: dict[str, str], no_record: bool, flag: str) -> str:
    what = f"{len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} vocdet did not make"
    line = (f"{root}: holds {what} (e.g. {foreign[0]}); vocdet builds its links there and removes only what it "
            f"recorded making ({RECORD_FILE}): move them away, or give another {flag}")
    if no_record and all(present[path] in (FOLDER, LINK) for path in foreign):
        line += " (only folders and links: an earlier vocdet's? then remove the folder; the links' targets stay)"
    return line
