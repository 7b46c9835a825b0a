"""vocdet's uses of TFX internals, each behind a check of the TFX release it was tested on.

1. The atomic Pusher (`components/atomic_pusher/executor.py`) is TFX's Pusher executor with
  another copy step. It logs, and records on the PushedModel artefact whether and where it pushed,
  through the private helpers TFX's own `Do` uses: `BaseExecutor._log_startup` and the Pusher
  executor's `_MarkPushed` / `_MarkNotPushed` (tfx 1.16.0 tfx/components/pusher/executor.py;
  their property keys are the executor's constants since tensorflow/tfx#6060). Those properties are what TFX's
  resolvers and Kubeflow read, so vocdet writes them exactly as TFX does (`PUSHER_TESTED`,
  `check_pusher`, run at the start of every push).
2. The TFJob chief's handoff (`pipeline/kubeflow/node.py`): on several Trainer pods, the chief
   runs TFX's portable Launcher and hands the resolved `ExecutionInfo` to the workers just before
   its executor starts. The only place TFX exposes that moment is the private
   `Launcher._run_executor(execution_info)`, which `launch()` calls once, with the resolved
   ExecutionInfo, just before the executor (tfx 1.16.0 tfx/orchestration/portable/launcher.py;
   TFX has no public hook there, tensorflow/tfx#3221 asks for a customisable executor handoff).
   `launcher_with_executor_hook` overrides it on the releases it was tested on
   (`LAUNCHER_TESTED`); it is used only with `kubeflow.trainer_workers` > 1, so a TFX upgrade
   never stops a single-pod task.
"""

from __future__ import annotations

from vocdet.components import compat

# The TFX releases whose Pusher executor helpers the atomic Pusher calls (prefixes: "1.16." is 1.16.x).
PUSHER_TESTED = ("1.16.",)
# The TFX releases whose portable Launcher calls `_run_executor(execution_info)` just before the executor.
LAUNCHER_TESTED = ("1.16.",)


def check_pusher(version: str | None = None) -> None:
    """Raises `compat.UntestedVersion` under a TFX outside `PUSHER_TESTED` (default: the installed TFX)."""
    compat.check_tested(
        "TFX",
        version,
        PUSHER_TESTED,
        workaround="atomic Pusher executor (Pusher's private _log_startup, _MarkPushed, _MarkNotPushed)",
        issue="tfx 1.16.0 tfx/components/pusher/executor.py, tensorflow/tfx#6060",
        test="tests/test_blessing_gate.py",
        constant="compat.tfx.PUSHER_TESTED",
        alternative="install tfx==1.16.0 (requirements.lock)",
    )


def log_startup(executor, input_dict, output_dict, exec_properties) -> None:
    """TFX's start-of-execution log line (`BaseExecutor._log_startup`)."""
    executor._log_startup(input_dict, output_dict, exec_properties)


def mark_pushed(executor, model_push, pushed_destination: str, pushed_version: str) -> None:
    """Records on the PushedModel artefact that, where and as which version the model was pushed, as TFX does."""
    executor._MarkPushed(model_push, pushed_destination=pushed_destination, pushed_version=pushed_version)


def mark_not_pushed(executor, model_push) -> None:
    """Records on the PushedModel artefact that the model was not pushed, as TFX does."""
    executor._MarkNotPushed(model_push)


def check_launcher(version: str | None = None) -> None:
    """Raises `compat.UntestedVersion` under a TFX outside `LAUNCHER_TESTED` (default: the installed TFX)."""
    compat.check_tested(
        "TFX",
        version,
        LAUNCHER_TESTED,
        workaround="TFJob chief's handoff (an override of the portable Launcher's private _run_executor)",
        issue="tfx 1.16.0 tfx/orchestration/portable/launcher.py, no public hook: tensorflow/tfx#3221",
        test="tests/test_tfjob.py",
        constant="compat.tfx.LAUNCHER_TESTED",
        alternative="train on one pod (kubeflow.trainer_workers: 1)",
    )


def launcher_with_executor_hook(before_executor):
    """TFX's portable Launcher class, calling `before_executor(execution_info)` just before its executor runs.

    `execution_info` is the resolved `tfx.orchestration.portable.data_types.ExecutionInfo`; if
    `before_executor` raises, the executor does not run and the Launcher fails the execution.
    """
    check_launcher()
    from tfx.orchestration.portable import launcher

    class HandoffLauncher(launcher.Launcher):
        def _run_executor(self, execution_info):
            before_executor(execution_info)
            return super()._run_executor(execution_info)

    return HandoffLauncher
