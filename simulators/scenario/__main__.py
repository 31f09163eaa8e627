"""python -m simulators.scenario SCENARIO [--start-gateway]"""

import sys

from simulators.scenario.cli import main

sys.exit(main())
