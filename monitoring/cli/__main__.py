"""`python -m monitoring.cli`: the `taxi-monitor` command."""

import sys

from monitoring.cli import main

sys.exit(main())
