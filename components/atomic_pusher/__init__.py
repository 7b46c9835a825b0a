"""TFX Pusher with atomic, versioned pushes in TF Serving's layout: `component.AtomicPusher`.

Light (no TFX import), so that configuration can read the default it shares with the executor.
"""

# How many versions a push keeps when the pipeline does not say (push.keep_versions).
DEFAULT_KEEP_VERSIONS = 5
