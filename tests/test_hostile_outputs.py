"""Outputs that would destroy or write into a person's data are refused in one line, before anything is written (issue 33).

vocdet deletes only what it made and recorded (`pipeline.data.link_tree`); an `--output`, or a serving
folder, that overlaps a `--data` folder is refused up front (`pipeline.local.output_folder`); and the
operations commands never turn a file into a new ML Metadata store, name the plot they wrote, and say
why a moved output folder's rollback knows no versions. Every command runs bounded by a timeout; none
trains, and none loads TensorFlow but through ML Metadata.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import pytest

from tests.test_failures import assert_one_line
from vocdet.components.atomic_pusher import push
from vocdet.pipeline import cli
from vocdet.pipeline.config import PipelineConfig
from vocdet.pipeline.data import layout, link_tree, sample
from vocdet.pipeline.local import output_folder

VOCDET = os.path.join(os.path.dirname(sys.executable), "vocdet")
# Every command here fails (or finishes) before any training, most before TensorFlow loads.
TIMEOUT_S = 60


def vocdet(*args, cwd):
    return subprocess.run([VOCDET, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)


def main(*argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the real command line, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def snapshot(folder) -> dict[str, object]:
    """Every entry under `folder`: a file's bytes, a link's target, a folder as such."""
    found = {}
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            path = os.path.join(parent, name)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[key] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[key] = ("folder",)
            else:
                with open(path, "rb") as handle:
                    found[key] = ("file", handle.read())
    return found


@pytest.fixture
def user_dataset(tmp_path):
    """A person's own dataset (the generated sample, 6 images) at `<X>/data-root`, as in the issue."""
    folder = tmp_path / "X" / "data-root"
    sample.make_sample(str(folder), sample.SampleSpec(num_images=6, seed=3), reuse=False)
    before = snapshot(folder)
    assert sum(kind[0] == "file" for kind in before.values()) >= 15
    return folder, before


# The data-root clash: a dataset that happens to be at <output>/data-root.

@pytest.mark.parametrize("command", ["ingest", "run"])
def test_data_at_the_outputs_data_root_is_refused_and_every_file_kept(user_dataset, tmp_path, command):
    folder, before = user_dataset
    result = vocdet(command, "--data", "X/data-root", "--output", "X", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = assert_one_line(result.stderr, command, "X/data-root", "data root of links")
    assert "move the data, or give another --output" in line
    assert snapshot(folder) == before
    assert sorted(os.listdir(tmp_path / "X")) == ["data-root"]  # not even the lock: refused before any write


def test_a_dataset_where_vocdet_keeps_its_links_is_never_touched(user_dataset, small_voc_root, tmp_path):
    """The same folder, not given as --data: the data root's own check refuses it (no record of vocdet's there)."""
    folder, before = user_dataset
    result = vocdet("ingest", "--data", small_voc_root, "--output", "X", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = assert_one_line(result.stderr, "ingest", str(folder), "vocdet did not make", link_tree.RECORD_FILE)
    assert "earlier vocdet" not in line  # it holds files: not an earlier vocdet's links
    assert snapshot(folder) == before


def test_data_root_is_rebuilt_touching_only_what_vocdet_recorded(small_voc_root, tmp_path):
    root = tmp_path / "root"
    layout.make_data_root([small_voc_root, small_voc_root], str(root))
    assert (root / link_tree.RECORD_FILE).is_file()
    layout.make_data_root([small_voc_root], str(root))  # a shorter --data list: group 1 goes
    assert sorted(os.listdir(root)) == [link_tree.RECORD_FILE, "0"]

    # Something put into vocdet's own folder by hand is refused, and kept.
    mine = root / "0" / "VOC2007" / "ImageSets" / "Main" / "mine.txt"
    mine.write_text("000001\n")
    with pytest.raises(layout.DataLayoutError, match=r"root: holds 1 entry vocdet did not make \(e\.g\. 0/VOC2007/ImageSets/Main/mine\.txt\)"):
        layout.make_data_root([small_voc_root], str(root))
    assert mine.read_text() == "000001\n"
    mine.unlink()

    # A FIFO there is refused without being opened (nothing blocks).
    os.mkfifo(root / "0" / "pipe")
    with pytest.raises(layout.DataLayoutError, match="0/pipe"):
        layout.make_data_root([small_voc_root], str(root))
    (root / "0" / "pipe").unlink()

    # A record that is not vocdet's: the folder is not touched.
    (root / link_tree.RECORD_FILE).write_text('{"format": "something else"}')
    with pytest.raises(layout.DataLayoutError, match="not the record vocdet writes"):
        layout.make_data_root([small_voc_root], str(root))
    assert (root / "0" / "VOC2007").is_dir()


def test_written_lists_are_rewritten_only_when_they_change_and_only_while_vocdets(tmp_path):
    root = tmp_path / "root"
    wanted = {"0": link_tree.folder(), os.path.join("0", "train.txt"): link_tree.text("a\nb\n"),
              os.path.join("0", "data"): link_tree.link(str(tmp_path))}
    link_tree.build(str(root), wanted)
    listed = root / "0" / "train.txt"
    stamp = os.stat(listed).st_mtime_ns
    link_tree.build(str(root), wanted)
    assert os.stat(listed).st_mtime_ns == stamp  # TFX's input fingerprint, and so its cache, hold
    link_tree.build(str(root), {**wanted, os.path.join("0", "train.txt"): link_tree.text("a\n")})
    assert listed.read_text() == "a\n"

    # A build killed while writing a list leaves a partial file vocdet recorded: the next build goes on.
    (root / "0" / "train.txt.vocdet-partial").write_text("a")
    link_tree.build(str(root), wanted)
    assert listed.read_text() == "a\nb\n" and not (root / "0" / "train.txt.vocdet-partial").exists()

    # Someone's bytes in place of vocdet's list: refused, kept.
    listed.write_text("theirs\n")
    with pytest.raises(link_tree.NotMadeByVocdet, match="0/train.txt"):
        link_tree.build(str(root), wanted)
    assert listed.read_text() == "theirs\n"


# Outputs and serving folders overlapping the data: one line each, through the real command, nothing written.

def _dataset(tmp_path) -> str:
    folder = tmp_path / "data"
    sample.make_sample(str(folder), sample.SampleSpec(num_images=4, seed=1), reuse=False)
    return str(folder)


OVERLAPS = {
    # name: (arguments after the command, what the line names)
    "output is /": (["--output", "/"], ["/: --output is the file system's root"]),
    "output is the data": (["--data", "data", "--output", "data"], ["data: --output is the --data folder"]),
    "output inside the data": (["--data", "data", "--output", "data/VOC2007/out"],
                               ["data/VOC2007/out: --output is inside the --data folder data"]),
    "data inside the pipeline root": (["--data", "out/pipeline_root/mine", "--output", "out"],
                                      ["out/pipeline_root/mine", "TFX's pipeline root"]),
    "serving folder inside the data": (["--data", "data", "--output", "out", "--serving-dir", "data/serving"],
                                       ["data/serving: the serving folder (push.serving_dir, --serving-dir) is inside"]),
    "data inside the serving folder": (["--data", "out/serving/data", "--output", "out"],
                                       ["out/serving/data: this --data folder is inside the serving folder"]),
}


@pytest.mark.parametrize("case", sorted(OVERLAPS))
def test_overlapping_outputs_are_refused_before_any_write(tmp_path, case):
    arguments, named = OVERLAPS[case]
    data = _dataset(tmp_path)
    for folder in ("out/pipeline_root/mine", "out/serving/data"):
        sample.make_sample(str(tmp_path / folder), sample.SampleSpec(num_images=4, seed=1), reuse=False)
    before = snapshot(tmp_path)
    command = "run" if "--serving-dir" in arguments else "ingest"
    result = vocdet(command, *arguments, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert_one_line(result.stderr, command, *named)
    assert snapshot(tmp_path) == before
    assert os.path.isdir(data)


def test_a_link_is_no_way_round_and_unrelated_folders_pass(tmp_path):
    data = _dataset(tmp_path)
    os.symlink(data, tmp_path / "alias")
    with pytest.raises(output_folder.UnsafeOutput, match="--output is the --data folder"):
        output_folder.check(PipelineConfig(output_dir=str(tmp_path / "alias")).with_overrides({"data": {"data_dirs": [data]}}))
    # Data that sits in the output folder, away from what vocdet writes there, is fine; so is the generated sample.
    for data_dir in (str(tmp_path / "out" / "mine"), str(tmp_path / "out" / "sample-data")):
        output_folder.check(PipelineConfig(output_dir=str(tmp_path / "out")).with_overrides({"data": {"data_dirs": [data_dir]}}))
    # run --package: everything under --output is the package's, but its generated sample.
    with pytest.raises(output_folder.UnsafeOutput, match="inside --output"):
        output_folder.check_paths(str(tmp_path / "out"), [str(tmp_path / "out" / "mine")])


@pytest.mark.parametrize("command", ["ingest", "run"])
def test_output_on_an_existing_file(tmp_path, command):
    (tmp_path / "afile").write_text("mine\n")
    for output, named in (("afile", "afile: --output is a file, not a folder"),
                          ("afile/sub", "afile/sub: --output is under")):
        result = vocdet(command, "--output", output, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert_one_line(result.stderr, command, named)
    assert (tmp_path / "afile").read_text() == "mine\n"


# The operations commands.

def _store(output) -> str:
    """An ML Metadata store as a run leaves one (its schema), at `<output>/metadata.sqlite`."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    os.makedirs(output, exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = os.path.join(output, "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


@pytest.mark.parametrize("command", ["runs", "models", "rollback"])
def test_an_empty_or_foreign_metadata_file_is_never_made_a_store(tmp_path, command):
    import sqlite3

    empty = tmp_path / "empty" / "metadata.sqlite"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign" / "metadata.sqlite"
    foreign.parent.mkdir()
    with contextlib.closing(sqlite3.connect(foreign)) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.commit()
    for path, named in ((empty, "empty (0 bytes), not an ML Metadata store"),
                        (foreign, "an SQLite database without ML Metadata's tables")):
        content, stamp = path.read_bytes(), os.stat(path).st_mtime_ns
        code, _, err = main(command, "--output", str(path.parent))
        assert code == 2, err
        assert_one_line(err, command, str(path), named, "never makes one")
        assert (path.read_bytes(), os.stat(path).st_mtime_ns, os.path.getsize(path)) == (content, stamp, len(content))
        assert sorted(os.listdir(path.parent)) == ["metadata.sqlite"]


def test_plot_names_the_file_it_wrote_and_refuses_a_folder(tmp_path):
    _store(tmp_path / "out")
    (tmp_path / "pictures").mkdir()
    code, _, err = main("runs", "--output", str(tmp_path / "out"), "--plot", str(tmp_path / "pictures"))
    assert code == 2, err
    assert_one_line(err, "runs", f"{tmp_path / 'pictures'}: is a folder (--plot)", "runs.png")
    assert os.listdir(tmp_path / "pictures") == [] and not (tmp_path / "pictures.png").exists()

    code, out, err = main("runs", "--output", str(tmp_path / "out"), "--plot", str(tmp_path / "pictures" / "history"))
    assert code == 0, err
    written = tmp_path / "pictures" / "history.png"
    assert written.is_file() and out.strip().splitlines()[-1].endswith(f"plot: {written}")

    os.mkfifo(tmp_path / "pipe.png")
    code, _, err = main("runs", "--output", str(tmp_path / "out"), "--plot", str(tmp_path / "pipe.png"))
    assert code == 2 and "not a regular file (--plot)" in err


def test_rollback_in_a_moved_output_folder_says_why_it_knows_no_version(tmp_path):
    """ML Metadata records written as the Pusher writes them (no training), then the output folder moved."""
    from ml_metadata.proto import metadata_store_pb2

    old, new = tmp_path / "old" / "out", tmp_path / "new" / "moved"
    store = _store(old)
    model_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Model"))
    pushed_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="PushedModel"))
    pusher_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="tfx.components.pusher.Pusher"))
    base = old / "serving" / "vocdet"
    for version in (1, 2):
        (base / str(version)).mkdir(parents=True)
        (base / str(version) / "saved_model.pb").write_bytes(b"")
        model = metadata_store_pb2.Artifact(type_id=model_type, uri=str(old / "pipeline_root" / "Trainer" / str(version)))
        pushed = metadata_store_pb2.Artifact(type_id=pushed_type, uri=str(base / str(version)))
        pushed.custom_properties["pushed"].int_value = 1
        pushed.custom_properties["pushed_destination"].string_value = str(base / str(version))
        pushed.custom_properties["pushed_version"].string_value = str(version)

        def event(kind, key):
            step = metadata_store_pb2.Event.Path.Step
            return metadata_store_pb2.Event(type=kind, path=metadata_store_pb2.Event.Path(steps=[step(key=key), step(index=0)]))

        store.put_execution(
            metadata_store_pb2.Execution(type_id=pusher_type, last_known_state=metadata_store_pb2.Execution.COMPLETE),
            [(model, event(metadata_store_pb2.Event.INPUT, "model")),
             (pushed, event(metadata_store_pb2.Event.OUTPUT, "pushed_model"))], [],
        )
    del store
    new.parent.mkdir()
    os.rename(old, new)
    code, _, err = main("rollback", "--output", str(new))
    assert code == 2, err
    line = assert_one_line(err, "rollback", f"{new}/serving/vocdet: ML Metadata knows no version here",
                           f"records 2 pushed under {old}/serving/vocdet", f"was {old} moved to {new}?",
                           f"ln -s {new} {old}")
    assert "versions known: none" not in line
    code, out, err = main("models", "--output", str(new))
    assert code == 0, err
    assert "unknown to ML Metadata" in out and f"note: {new}/serving/vocdet: ML Metadata knows no version here" in err
    assert push.versions(str(new / "serving" / "vocdet")) == [1, 2]  # nothing published
