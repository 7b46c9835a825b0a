"""ExampleGen for raw VOCdevkit folders: a Beam executor for TFX's FileBasedExampleGen."""
