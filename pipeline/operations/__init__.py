"""Operating scheduled retraining: what `vocdet runs`, `models` and `rollback` do, as library functions.

`history` (runs read back from ML Metadata), `models` (the serving folder's versions and where each
came from), `rollback` (an earlier version served again, the replaced models withdrawn), `plot` (the
history as a picture); `lineage` holds the ML Metadata look-ups they share, and `source` opens the
store (a local output folder's SQLite file, or the cluster's store by URL). The CLI handlers only
parse, call these and print; the tests call them directly.
"""
