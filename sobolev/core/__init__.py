"""The core of Sobolev training, independent of any experiment: target functions and their
derivatives (``functions``, ``derivatives``), eq. (1) and eq. (2) (``losses``), plain and batched
models (``models``), regression samples (``data``) and the one training loop (``training``)."""
