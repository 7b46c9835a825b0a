"""MkDocs hook: the configuration reference, generated from the config dataclasses at every build.

`docs/configuration.md` holds the marker below; this hook replaces it with one table per section of
`PipelineConfig` (the top level, then beam, data, model, train, eval, push, kubeflow): each field's key,
type, default, the presets that change it, and the comment written above it in the code
(`vocdet.pipeline.config.sections`, `vocdet.components.settings`). The page is read from the code, so
it cannot drift from it; `tests/test_docs.py` checks that it lists every field. Needs vocdet importable
(`make setup` installs both locks into one .venv).
"""

from __future__ import annotations

import ast
import dataclasses
import html
import inspect
import json
import os
import re
import textwrap

MARKER = "<!-- config-reference -->"
# Where the repository's files are linked from (the page shows the defining file's path).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs' hook: the marker, wherever a page has it, becomes the reference."""
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown


def reference() -> str:
    """The reference's Markdown: the top-level keys, then one section a heading."""
    from vocdet.pipeline import config  # imported at build time: the site shows the code as it is now

    presets = {name: factory() for name, factory in config.PRESETS.items()}
    top, sections = [], []
    for field in dataclasses.fields(config.PipelineConfig):
        (sections if _is_section(field) else top).append(field)
    parts = [
        f"The presets column gives each preset's value where it differs from the default. `vocdet run` and "
        f"`vocdet ingest` start from `{config.LOCAL_PRESET}`; `vocdet compile`, `submit` and `schedule` (and "
        f"`runs`, `models`, `rollback` with `--metadata`) from `{config.CLUSTER_PRESET}`.\n",
        "### Top level\n",
        _table(config.PipelineConfig, top, "", presets),
    ]
    for field in sections:
        section_class = type(getattr(config.PipelineConfig(), field.name))
        parts.append(f"### `{field.name}`\n")
        parts.append(_table(section_class, dataclasses.fields(section_class), field.name, presets))
    return "\n".join(parts)


def comments(cls: type) -> dict[str, str]:
    """Each field's comment: the `#` lines directly above its line in the class body, and one at its end."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, index = [], node.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#"):
            above.insert(0, lines[index].strip().lstrip("#").strip())
            index -= 1
        trailing = lines[node.end_lineno - 1].split("  # ", 1)
        if len(trailing) == 2 and '"' not in trailing[1]:
            above.append(trailing[1].strip())
        found[node.target.id] = " ".join(above)
    return found


def _is_section(field: dataclasses.Field) -> bool:
    return field.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(field.default_factory)


def _default(field: dataclasses.Field):
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _table(cls: type, fields, section: str, presets: dict) -> str:
    path = os.path.relpath(inspect.getsourcefile(cls), ROOT)
    doc = inspect.getdoc(cls) or ""
    rows = [
        f"{_markdown(doc)}\n\n*`{cls.__name__}`, in `{path}`.*\n",
        "| key | type | default | presets | what it does |",
        "|---|---|---|---|---|",
    ]
    text = comments(cls)
    for field in fields:
        key = f"{section}.{field.name}" if section else field.name
        default = _default(field)
        changed = []
        for name, preset in presets.items():
            value = getattr(getattr(preset, section), field.name) if section else getattr(preset, field.name)
            if value != default:
                changed.append(f"{name}: {_value(value)}")
        rows.append(
            f"| `{key}` | `{_cell(str(field.type))}` | {_value(default)} | {'<br>'.join(changed)} "
            f"| {_markdown(text.get(field.name, ''))} |"
        )
    return "\n".join(rows) + "\n"


def _value(value) -> str:
    """A value as YAML would take it (JSON is YAML), in a code span."""
    return f"`{_cell(json.dumps(value))}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(text: str) -> str:
    """A comment as table-safe Markdown: code spans kept, `<` and `>` outside them escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    return _cell("".join(part if part.startswith("`") else html.escape(part, quote=False) for part in parts))
