"""`python -m rebeam.cli`: the same as the `rebeam` command."""

import sys

from rebeam.cli import main

sys.exit(main())
