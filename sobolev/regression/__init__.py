"""Section 4.1, regression of seven 2-D functions: ``config`` (params), ``grid`` (the batched
training grid and the paper's settings), ``report`` (metrics, claims, figures, artifacts)."""
