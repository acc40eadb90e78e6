"""Section 3 and SM §1, computed: ``config`` (params), ``compute`` (the constructions, counts and
small trainings), ``report`` (each claim as a table, figure, metrics and printed conclusions)."""
