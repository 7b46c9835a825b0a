"""TFX Pusher's executor, pushing with `push.push` (atomic, versioned, pruned).

Blessing checks (ModelBlessing and InfraBlessing) and the PushedModel
artefact's properties are TFX's own (inherited); only the copy changes, and a
model that is already the newest serving version is not pushed again, and a
model `vocdet rollback` withdrew is refused (also when a rerun takes it from
TFX's cache: its mark changes the artefact, so the Pusher runs again and sees
it). The decision and the copy happen under the serving folder's lock
(`serving_lock`), which a rollback takes too. The
private TFX helpers it records the push with are called through `compat.tfx`,
behind a check of the TFX release. The component is `component.AtomicPusher`.
"""

from __future__ import annotations

import logging
import os

from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, proto_utils

from vocdet.components import withdrawal
from vocdet.components.atomic_pusher import DEFAULT_KEEP_VERSIONS, push, serving_lock
from vocdet.components.coco_evaluator import BASELINE_MODEL_ID_PROPERTY
from vocdet.components.compat import tfx as tfx_compat

KEEP_VERSIONS_KEY = "keep_versions"
# Push over a serving version the metadata store does not know (see `_unknown_serving_version`).
REPLACE_UNKNOWN_KEY = "replace_unknown_serving"
# PushedModel custom property: why a blessed model was not pushed.
NOT_PUSHED_REASON_KEY = "not_pushed_reason"
# PushedModel custom property: 1 when the model was already the newest serving version.
ALREADY_SERVING_KEY = "already_serving"

_logger = logging.getLogger(__name__)


class Executor(tfx_pusher_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        tfx_compat.check_pusher()
        tfx_compat.log_startup(self, input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            tfx_compat.mark_not_pushed(self, model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("vocdet pushes to a filesystem destination (a path or a gs:// / s3:// URI)")
        custom_config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        if withdrawal.is_withdrawn(model):
            reason = (
                f"model {model.id} was withdrawn ({withdrawal.withdrawn_reason(model) or 'vocdet rollback'}); "
                "vocdet rollback --to its version serves it again"
            )
            _logger.warning("Not pushed: %s", reason)
            model_push.set_string_custom_property(NOT_PUSHED_REASON_KEY, reason)
            tfx_compat.mark_not_pushed(self, model_push)
            return
        base_directory = destination.filesystem.base_directory
        with serving_lock.hold(base_directory, "the Pusher", wait_seconds=serving_lock.PUSH_WAIT_SECONDS):
            self._push(input_dict, model_push, base_directory, custom_config)

    def _push(self, input_dict, model_push, base_directory: str, custom_config: dict) -> None:
        """The decision and the copy, under the serving folder's lock."""
        model_path = self.GetModelPath(input_dict)
        serving = push.serving_version(model_path, base_directory)
        if serving is not None:
            # A rerun that re-blessed the model it already serves (e.g. a new blessing threshold).
            _logger.info("Already serving as version %d: %s; not pushed again", serving, model_path)
            model_push.set_int_custom_property(ALREADY_SERVING_KEY, 1)
            tfx_compat.mark_pushed(
                self, model_push, pushed_destination=os.path.join(base_directory, str(serving)), pushed_version=str(serving)
            )
            return
        unknown = self._unknown_serving_version(input_dict, base_directory, custom_config)
        if unknown is not None:
            reason = (
                f"{base_directory} already serves version {unknown}, which this pipeline's metadata store never "
                "compared with (a new or restored store?); not replaced. Compare the candidate with it, then set "
                f"push.{REPLACE_UNKNOWN_KEY}: true for one run"
            )
            _logger.warning("Not pushed: %s", reason)
            model_push.set_string_custom_property(NOT_PUSHED_REASON_KEY, reason)
            tfx_compat.mark_not_pushed(self, model_push)
            return
        keep_versions = int(custom_config.get(KEEP_VERSIONS_KEY, DEFAULT_KEEP_VERSIONS))
        version, serving_path = push.push(model_path, base_directory, keep_versions)
        # Archive in the PushedModel artefact too, as TFX's Pusher does.
        io_utils.copy_dir(model_path, model_push.uri)
        tfx_compat.mark_pushed(self, model_push, pushed_destination=serving_path, pushed_version=str(version))

    @staticmethod
    def _unknown_serving_version(input_dict, base_directory: str, custom_config: dict) -> int | None:
        """The newest serving version, when the candidate was blessed without a baseline and replacing it is not allowed.

        A store that has blessed a model always gives the Evaluator a baseline; no baseline while the
        serving folder already serves a version means that version came from elsewhere (a store
        replaced or lost, a copy by hand), and pushing would replace it unjudged.
        """
        if custom_config.get(REPLACE_UNKNOWN_KEY):
            return None
        blessing = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        if blessing.has_custom_property(BASELINE_MODEL_ID_PROPERTY):
            return None
        present = push.versions(base_directory)
        return present[-1] if present else None
