"""``python -m loan_default.batch``: the ``loan-default score`` command."""

import sys

from loan_default.batch.cli import main

sys.exit(main())
