"""Section 4.2, Sobolev distillation of Atari policies: ``config`` (params), ``atari``
(environments, teachers), ``distill`` (recordings, the student, the objective, training, tuning),
``chain`` (the per-game DVC steps), ``report`` (tables, Figure 4, claims)."""
