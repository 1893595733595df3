"""Run the whole pytest suite; treat 'no tests collected' (exit 5) as the failure it is.

CI calls this through ``make test``. pytest exits 5 when it collected nothing, which would
otherwise let a broken test layout pass silently.
"""

from __future__ import annotations

import subprocess
import sys

NO_TESTS_COLLECTED = 5


def main() -> int:
    code = subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]])
    if code == NO_TESTS_COLLECTED:
        print("run_pytest: pytest collected no tests - the suite is broken", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
