"""What the tests share, defined once: paths, sample loans, the default book's request models, a
fake Lambda context and event builders, servers (the service, the original design, MLflow),
load and fault clients, and the browser harness.

Benchmarks (``bench/``) import the same helpers, so a benchmark and a test start a server, build
an event or send a loan the same way.
"""
