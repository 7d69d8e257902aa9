"""`python -m monitoring.scenario`: the replay scenario (see the package docstring)."""

import sys

from monitoring.scenario.replay import main

sys.exit(main())
