"""Section 5.3: does Sobolev training need feature learning? Iterative linearisation (Goldwaser & Ge)."""
