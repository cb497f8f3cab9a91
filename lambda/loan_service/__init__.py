"""Loan-default prediction service: FastAPI app, ONNX predictor, MLflow prediction logging.

``lambda/`` is a source root (``lambda`` is a keyword), so this package imports as
``loan_service`` and ``lambda/main.py`` as ``main``.
"""
