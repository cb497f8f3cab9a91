"""``python -m loan_default``: see :mod:`loan_default.cli`."""

import sys

from loan_default.cli import main

sys.exit(main())
