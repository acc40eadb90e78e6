"""Section 5.2: tuning-free Sobolev training with Fromage, LARS and deep relative trust (Bernstein et al. 2020)."""
