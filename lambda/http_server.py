"""The ECS task's entry module: ``python3 -m http_server`` from the task root (``/var/task``).

The server itself is ``loan_service.http_server`` (also ``loan-default serve``).
"""

import sys

from loan_service.http_server import main

if __name__ == "__main__":
    sys.exit(main())
