"""TFX Pusher executor with atomic, versioned pushes in TF Serving's layout."""
