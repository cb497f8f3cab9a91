"""Turn a loan-book CSV into the artifact folder that serving loads (``python -m training``).

Importing this package is cheap on purpose: scikit-learn, matplotlib, skl2onnx and mlflow are
imported inside the functions that need them.

The loan book's schema model (``loan_service.book``) lives in serving's source root, ``lambda/``,
so that training and serving share one definition; that folder is put on ``sys.path`` here when a
checkout runs ``python -m training`` (the test runner and mypy already have it).
"""

import sys
from pathlib import Path

_SERVING_SOURCE_ROOT = Path(__file__).resolve().parent.parent / "lambda"
if _SERVING_SOURCE_ROOT.is_dir() and str(_SERVING_SOURCE_ROOT) not in sys.path:
    sys.path.append(str(_SERVING_SOURCE_ROOT))
SOURCE_ROOT_ON_PATH = True
