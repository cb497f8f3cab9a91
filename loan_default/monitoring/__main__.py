"""``python -m loan_default.monitoring``: see :mod:`loan_default.monitoring.cli`."""

import sys

from loan_default.monitoring.cli import main

sys.exit(main())
