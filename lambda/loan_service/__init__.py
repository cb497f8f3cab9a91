"""Loan-default prediction service: FastAPI app, ONNX predictor, MLflow prediction logging.

``lambda/`` is a source root (``lambda`` is a keyword), so this package imports as
``loan_service`` and ``lambda/main.py`` as ``main``.
"""

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager


def prepare_process() -> None:
    """Call before anything imports numpy or pydantic; an explicit setting in the environment wins.

    * One BLAS thread: numpy's OpenBLAS would start a thread per core at import, ~60 ms of CPU on
      a 2-core machine (a tenth of the cold start), and threads that compete with the uvicorn
      workers. Serving multiplies a few 7 x 6 matrices; one BLAS thread is plenty.
    * No pydantic plugins: the service uses none, and looking for them reads the entry points of
      every installed distribution when the first model is built, on the way to the first answer.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


@contextmanager
def long_lived_startup() -> Iterator[None]:
    """Import and load the service with the cyclic garbage collector paused, then freeze it.

    What start-up builds (modules, the app, the model, the request models) lives as long as the
    process, yet the collector would walk those ~100,000 objects again in every full collection:
    about a quarter of a 1,000-loan ``/predict/batch`` here, and its passes during the imports a
    tenth of the cold start. ``gc.freeze`` moves them out of the collector's sight (no collection
    first: that alone costs more than it frees). A failed start-up only turns the collector back
    on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if enabled:
            gc.enable()
