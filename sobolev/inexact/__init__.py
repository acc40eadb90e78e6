"""Section 5.5, derivatives you do not have exactly: how Sobolev training's advantage falls as the
derivative labels get noisier (the noise curve), and how a black box's evaluation budget is best
spent — values, forward differences, k-NN estimates from the samples, or exact gradients
(:mod:`~sobolev.inexact.compute`; tables, claims and figures in :mod:`~sobolev.inexact.report`)."""
