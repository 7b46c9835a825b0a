"""`vocdet rollback [--to VERSION]`: an earlier version served again, atomically for TF Serving.

TF Serving (its default `latest` version policy) serves the highest integer version under the model's
base folder. A rollback re-publishes the chosen model as a new highest version, through the Pusher's
own path (`atomic_pusher.push.push`: a copy into `.incoming-<v>`, then one rename): TF Serving loads the
new version and unloads the old one, as after any push, and never sees a half-written folder. Also:

- the chosen version is served even when newer ones exist, and survives the Pusher's pruning to
  `push.keep_versions` (it becomes the newest). A version folder already pruned is restored from its
  Model artefact under the pipeline root (`<model>/Format-Serving`), found through ML Metadata;
- the Pusher and a rollback hold the serving folder's lock (`atomic_pusher.serving_lock`) while they
  decide and publish, so a rollback never meets the Pusher's `.incoming-*` clean-up;
- every blessed model of the pipeline newer than the chosen one is marked withdrawn in ML Metadata
  (`components.withdrawal`): the Evaluator's baseline and the warm start skip them, the Pusher refuses
  them. Rolling forward (`--to` a withdrawn version) clears that model's mark;
- the rollback is recorded as an ML Metadata execution (`lineage.ROLLBACK_EXECUTION_TYPE`) in the
  pipeline's context, with the model as its `model` input and the new version as a PushedModel
  output, as a Pusher's: `vocdet runs` and `vocdet models` read it there.

TF Serving's alternative, `model_version_policy { specific { versions: N } }`, pins a version without
copying, but needs the model config file changed and reloaded (`--model_config_file_poll_wait_seconds`
or a restart) and then ignores every new push until it is changed back. Object stores (gs://, s3://)
have no atomic rename: a rollback there is refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

from ml_metadata.proto import metadata_store_pb2

from vocdet.components import withdrawal
from vocdet.components.atomic_pusher import push, serving_lock
from vocdet.pipeline.operations import lineage

SERVING_SUBDIR = "Format-Serving"  # TFX's path_utils: where a Model artefact keeps its SavedModel
SAVED_MODEL_FILE = "saved_model.pb"


@dataclasses.dataclass
class RollbackResult:
    to_version: int
    published_version: int
    published_path: str
    previous_version: int
    restored_from: str
    withdrawn_versions: list[int]
    cleared_mark: bool


def rollback(store, pipeline_name: str, base_directory: str, keep_versions: int, to: int | None = None,
             holder: str = "vocdet rollback") -> RollbackResult:
    """Serves version `to` (default: the newest earlier version of another usable model) again; see the module doc.

    Bad input is a ValueError of one line: an object store, a folder another writer holds, nothing
    to roll back to, an unknown version, a version whose model is not blessed.
    """
    if not serving_lock.is_local(base_directory):
        raise ValueError(
            f"{base_directory}: vocdet rollback needs a filesystem serving folder (a local disk or the PVC); an object "
            "store has no atomic rename, so TF Serving could load a half-copied version"
        )
    try:
        with serving_lock.hold(base_directory, holder):
            return _rollback(store, pipeline_name, base_directory, keep_versions, to)
    except serving_lock.ServingInUse as error:
        raise ValueError(str(error)) from None


def _versions_text(versions) -> str:
    return ", ".join(str(v) for v in sorted(versions)) or "none"


def _rollback(store, pipeline_name: str, base: str, keep_versions: int, to: int | None) -> RollbackResult:
    present = push.versions(base)
    if not present:
        raise ValueError(f"nothing to roll back to: {base} serves no version")
    served = present[-1]
    known = lineage.serving_versions(store, base)
    moved = lineage.moved_serving_folder(store, base) if not known else None
    if moved:
        raise ValueError(f"{moved}, then roll back")
    served_model = known[served].model if served in known else None
    if to is None:
        usable = [
            version for version in sorted(known, reverse=True)
            if version < served and (served_model is None or known[version].model.id != served_model.id)
            and not withdrawal.is_withdrawn(known[version].model) and lineage.is_blessed(store, known[version].model.id)
        ]
        if not usable:
            raise ValueError(
                f"nothing to roll back to: {base} serves version {served}, and no earlier version holds another blessed "
                f"model that is not withdrawn (versions known: {_versions_text(known)}); give --to VERSION"
            )
        to = usable[0]
    elif to not in known:
        if to in present:
            raise ValueError(
                f"version {to}: not blessed: no blessed run of this pipeline pushed it (copied by hand, or pushed "
                "through another metadata store); roll back to a version vocdet pushed"
            )
        raise ValueError(f"version {to}: unknown; {base} has versions {_versions_text(present)} and ML Metadata knows "
                         f"{_versions_text(known)}")
    target = known[to].model
    if not lineage.is_blessed(store, target.id):
        raise ValueError(f"version {to}: its model (artefact {target.id}) is not blessed; roll back to a blessed version")
    if served_model is not None and served_model.id == target.id and not withdrawal.is_withdrawn(target):
        raise ValueError(f"version {to}: already served (version {served} is the same model); nothing to roll back")

    source = os.path.join(base, str(to))
    if not os.path.isfile(os.path.join(source, SAVED_MODEL_FILE)):  # pruned: the model's own artefact
        source = os.path.join(target.uri, SERVING_SUBDIR)
        if not os.path.isfile(os.path.join(source, SAVED_MODEL_FILE)):
            raise ValueError(f"version {to}: its folder was pruned and its model artefact {source} holds no SavedModel")
    now = datetime.datetime.now(datetime.timezone.utc)
    version, path = push.push(source, base, keep_versions)

    reason = f"rolled back to version {to} by vocdet rollback at {now.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    doomed = _newer_blessed_models(store, pipeline_name, target)
    for model in doomed:
        withdrawal.set_mark(model, True, reason)
    cleared = withdrawal.is_withdrawn(target)
    if cleared:
        withdrawal.set_mark(target, False, f"served again: {reason}")
    if doomed or cleared:
        store.put_artifacts([*doomed, *([target] if cleared else [])])
    doomed_ids = {model.id for model in doomed}
    withdrawn_versions = sorted(v for v, record in known.items() if record.model.id in doomed_ids)
    _record(store, pipeline_name, now, target, to, served, version, path, source, withdrawn_versions, sorted(doomed_ids))
    return RollbackResult(to, version, path, served, source, withdrawn_versions, cleared)


def _newer_blessed_models(store, pipeline_name: str, target) -> list:
    """The pipeline's blessed, not yet withdrawn models newer than `target`: what the rollback takes back."""
    pipeline = lineage.pipeline_context(store, pipeline_name)
    model_type = store.get_artifact_type("Model").id
    return [
        model for model in store.get_artifacts_by_context(pipeline.id)
        if model.type_id == model_type and model.id > target.id and not withdrawal.is_withdrawn(model)
        and lineage.is_blessed(store, model.id)
    ]


def _record(store, pipeline_name, now, target, to, previous, version, path, source, withdrawn_versions, withdrawn_ids):
    """The rollback as an execution in the pipeline's context: `model` in, a PushedModel out (as a Pusher's)."""
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name=lineage.ROLLBACK_EXECUTION_TYPE))
    execution = metadata_store_pb2.Execution(type_id=execution_type, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    properties = execution.custom_properties
    properties["rollback_id"].string_value = f"rollback-{now.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    properties["to_version"].int_value = to
    properties["previous_version"].int_value = previous
    properties["published_version"].int_value = version
    properties["restored_from"].string_value = source
    properties["withdrawn_versions"].string_value = json.dumps(withdrawn_versions)
    properties["withdrawn_models"].string_value = json.dumps(withdrawn_ids)
    pushed_type = store.get_artifact_type("PushedModel").id
    pushed = metadata_store_pb2.Artifact(type_id=pushed_type, uri=path, state=metadata_store_pb2.Artifact.LIVE)
    pushed.custom_properties["pushed"].int_value = 1
    pushed.custom_properties["pushed_destination"].string_value = path
    pushed.custom_properties["pushed_version"].string_value = str(version)

    def event(kind, key, **ids):
        return metadata_store_pb2.Event(
            type=kind, path=metadata_store_pb2.Event.Path(steps=[
                metadata_store_pb2.Event.Path.Step(key=key), metadata_store_pb2.Event.Path.Step(index=0)]), **ids
        )

    execution_id, _, _ = store.put_execution(
        execution, [(pushed, event(metadata_store_pb2.Event.OUTPUT, lineage.PUSHED_MODEL_KEY))],
        [lineage.pipeline_context(store, pipeline_name)],
    )
    # The model's input event on its own: writing the artefact again would change it, and with it the
    # cache key of every node that reads it (TFX hashes the whole artefact), e.g. the next warm start.
    store.put_events([event(metadata_store_pb2.Event.INPUT, lineage.MODEL_KEY, artifact_id=target.id,
                            execution_id=execution_id)])
