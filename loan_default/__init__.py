"""``loan-default``: one command line for the model's life (train, serve, score, monitor, ...)."""
