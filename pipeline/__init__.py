"""vocdet's composition: the configuration, the pipeline, its runners and its command line.

- `config/`: the typed configuration (sections, presets, layered loading);
- `pipeline.py`: `create_pipeline`, pure, the one definition every runner runs;
- `beam_args.py`: Beam's flags from the config, for every runner;
- `data/`: dataset layouts and the data root every entry point builds;
- `local/`: LocalDagRunner/BeamDagRunner, the run summary, the output lock;
- `kubeflow/`: the KFP compiler, each task's entrypoint, the TFJob, KFP's client, the rehearsal;
- `cli/`: `vocdet`, which only parses, calls and prints;
- `tools/`: predict, backbone weights, sample weights.

What runs inside the components lives in `vocdet.components`, which never imports this package.
"""
