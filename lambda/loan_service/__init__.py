"""Loan-default prediction service: FastAPI app, ONNX predictor, MLflow prediction logging.

``lambda/`` is a source root (``lambda`` is a keyword), so this package imports as
``loan_service`` and ``lambda/main.py`` as ``main``.
"""

import os


def limit_blas_threads() -> None:
    """Call before anything imports numpy: its OpenBLAS would start a thread per core at import,
    ~60 ms of CPU on a 2-core machine (a tenth of the cold start), and threads that compete with
    the uvicorn workers. Serving multiplies a few 7 x 6 matrices; one BLAS thread is plenty. An
    explicit setting in the environment wins."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
