"""The data a run reads: recognised layouts (`layout`), the one data root every entry point builds
(`root`), the generated sample (`sample`) and the schema kept with the project (`frozen_schema`)."""
