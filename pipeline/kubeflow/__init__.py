"""The pipeline on Kubeflow Pipelines, as TFX's own `orchestration/kubeflow/` kept it, one room:

- `compiler`: `create_pipeline` compiled to a KFP v2 package, one container task per TFX node;
- `node`: what each task runs, TFX's portable Launcher for its one node (the image's entrypoint);
- `tfjob`: the multi-node Trainer's TFJob, submitted and watched by the Trainer's task;
- `client`: KFP's API (submit, schedule);
- `rehearsal`: a compiled package run here, its tasks' own commands in dependency order.
"""
