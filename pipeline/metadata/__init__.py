"""vocdet's ML Metadata store: where TFX records every run, artefact and lineage.

Locally it is an SQLite file in the output folder. On a cluster it is vocdet's own database
(MySQL by default, `k8s/metadata-store.yaml`), named by one URL, `kubeflow.metadata`, since
Kubeflow Pipelines no longer runs the `metadata-grpc-service` TFX used to write into
(kubeflow/pipelines#13986). `store` reads that URL, keeps the password out of it and out of the
compiled package, and connects with a bounded wait.
"""
