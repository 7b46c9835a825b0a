"""`python -m vocdet.pipeline.cli`: the `vocdet` command."""

import sys

from vocdet.pipeline.cli.app import main

sys.exit(main())
