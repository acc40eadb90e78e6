import numpy as np

import sobolev

rng = np.random.default_rng(0)
x = rng.uniform(-2, 2, (100, 2))                       # 100 points, 2 inputs: numpy, torch or lists
y = np.sin(x[:, 0]) * x[:, 1]                          # values (N,)
dydx = np.stack([np.cos(x[:, 0]) * x[:, 1], np.sin(x[:, 0])], 1)   # derivatives (N, D); NaN = unknown
model = sobolev.fit(x, y, dydx)                        # Sobolev training; sobolev.fit(x, y): values only
print(model)
x_new = rng.uniform(-2, 2, (5, 2))
p = model.predict_with_spread(x_new)                   # ensemble mean and spread, values and derivatives
print(np.c_[p.value, np.sin(x_new[:, 0]) * x_new[:, 1], p.value_std].round(4))
model.save("model.pt")
assert np.allclose(sobolev.FittedModel.load("model.pt").predict(x_new), p.value)
