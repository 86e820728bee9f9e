"""What only the notebooks use: convolution by hand, architecture arithmetic, pictures (a residual block, a
separable convolution, IVF cells and HNSW layers, DBA and αQE, proxies), offline ImageNet class names,
the platform a notebook runs on, notebook parameters, the original tutorial's score, checked exercises and
questions, and the claims a notebook's text makes about its numbers (``claims.claim``: ✓ or ⚠ for a learner,
strict in the test run)."""
