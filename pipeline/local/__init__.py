"""The pipeline on this machine: TFX's LocalDagRunner or BeamDagRunner (`runner`), the summary of a run
read back from ML Metadata (`summary`), and the lock that keeps one vocdet per output folder
(`output_lock`). Nothing here is imported for `vocdet --help` but this file and `output_lock`.
"""

# The TFX orchestrators `vocdet run --runner` chooses from; the first is the default.
DAG_RUNNERS = ("local", "beam")
