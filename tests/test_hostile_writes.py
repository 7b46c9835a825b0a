"""vocdet writes over nothing it did not write itself: the schema file, and every user file around it."""

import os

import pytest

from vocdet.pipeline.data import frozen_schema


def test_freeze_schema_never_overwrites_a_users_file(tmp_path):
    theirs = tmp_path / "schema.pbtxt"
    theirs.write_text("feature { name: 'mine' }\n")
    with pytest.raises(frozen_schema.FreezeError, match="exists and was not written by `vocdet freeze-schema`; not overwritten"):
        frozen_schema.freeze(str(tmp_path / "outputs"), str(theirs))
    assert theirs.read_text() == "feature { name: 'mine' }\n"


def test_freeze_schema_refuses_a_fifo_or_a_folder_at_once(tmp_path):
    fifo = tmp_path / "fifo.pbtxt"
    os.mkfifo(fifo)
    with pytest.raises(frozen_schema.FreezeError, match="is a FIFO .named pipe., not a regular file"):
        frozen_schema.freeze(str(tmp_path / "outputs"), str(fifo))
    with pytest.raises(frozen_schema.FreezeError, match="is a folder, not a regular file"):
        frozen_schema.freeze(str(tmp_path / "outputs"), str(tmp_path))


def test_freeze_schema_replaces_its_own_earlier_file(tmp_path):
    ours = tmp_path / "schema.pbtxt"
    ours.write_text(f"{frozen_schema.FROZEN_HEADER} from somewhere\n")
    with pytest.raises(frozen_schema.FreezeError, match="no ML Metadata store"):  # past the check: on to the store
        frozen_schema.freeze(str(tmp_path / "outputs"), str(ours))
