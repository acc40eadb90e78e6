"""Shared by every section, importing no section: validated params (``params``), paths,
verdicts (``claims``), paired comparisons (``compare``), figures (``plotting``), helpers (``utils``)."""
