"""`python -m perception`: the `percept` command line."""

import sys

from perception.cli import main

sys.exit(main())
