"""Turn a loan-book CSV into the artifact folder that serving loads (``python -m training``).

Importing this package is cheap on purpose: scikit-learn, matplotlib, skl2onnx and mlflow are
imported inside the functions that need them.
"""
