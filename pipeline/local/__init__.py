"""The pipeline on this machine: TFX's LocalDagRunner or BeamDagRunner (`runner`), the summary of a run
read back from ML Metadata (`summary`), the lock that keeps one vocdet per output folder
(`output_lock`), and the check that an output folder never writes into the data (`output_folder`).
Nothing here is imported for `vocdet --help` but this file, `output_lock` and `output_folder`.
"""

# The TFX orchestrators `vocdet run --runner` chooses from; the first is the default.
DAG_RUNNERS = ("local", "beam")
