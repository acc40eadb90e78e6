"""Differential machine learning on your own samples: Black-Scholes, noisy payoffs and pathwise deltas.

Run: ``python examples/differential_black_scholes.py`` (about 30 s on 2 cores). ``fit`` is
:func:`sobolev.fit`'s recipe for noisy labels (``sobolev.fit(x, y, dydx, noisy=True)``).
"""

from sobolev.differential.simulators import BlackScholes
from sobolev.differential.training import fit

bs = BlackScholes()
data = bs.training_set(8192, seed=0)  # x (8192, 1) spots, y payoffs, dydx pathwise deltas: any (x, y, dy/dx) works
test = bs.test_spots()  # 100 spots in [0.35, 1.65]
for label, dydx in (("standard", None), ("differential", data.dydx)):
    model = fit(data.x, data.y, dydx, seeds=5, progress=False)  # an ensemble of 5, noisy-label recipe
    value, delta = model.predict(test), model.predict_derivatives(test)  # (100,) and (100, 1): ensemble means
    v = (value - bs.price(test)).pow(2).mean().sqrt() * 100
    d = (delta - bs.delta(test)).pow(2).mean().sqrt() * 100
    print(f"{label:>12}: value RMSE × 100 = {v:.3f}, delta RMSE × 100 = {d:.3f}")
