"""The files a run on this machine reads by name from its settings, checked before anything runs.

A checkpoint, backbone weights or frozen schema named in the settings is opened by Keras, NumPy or
TFX deep inside a component, minutes or an hour into a run; a FIFO there would block it for good,
and a missing file would fail it late with a library's traceback. Each is checked here, from its
status alone (`safe_files.check_file`: a regular file, links followed), and a problem is one line
naming the file and the setting. A compiled Kubeflow pipeline's files are the cluster's: not checked
here (`vocdet compile`).
"""

from __future__ import annotations

from vocdet.components import safe_files
from vocdet.components.trainer import checkpoint
from vocdet.pipeline.config import PipelineConfig


def named_files(config: PipelineConfig) -> dict[str, str]:
    """{setting: path} of every file the settings name (a shipped checkpoint by its file)."""
    files = {
        "model.backbone_weights": config.model.backbone_weights or "",
        "model.init_checkpoint": checkpoint.resolve(config.model.init_checkpoint) if config.model.init_checkpoint else "",
        "data.schema_file": config.data.schema_file,
    }
    return {setting: path for setting, path in files.items() if path}


def check(config: PipelineConfig) -> None:
    """Raises ValueError, `<path>: <setting>: <problem>`, for the first named file that is not a regular file."""
    for setting, path in named_files(config).items():
        try:
            safe_files.check_file(path)
        except safe_files.UnsafeFileError as error:
            raise ValueError(f"{path}: {setting}: {error.problem}") from None
