import numpy as np

import sobolev

rng = np.random.default_rng(0)
x = rng.uniform(-2, 2, (100, 2))                                   # points (N, D)
y = np.sin(x[:, 0]) * x[:, 1]                                      # values (N,)
dydx = np.stack([np.cos(x[:, 0]) * x[:, 1], np.sin(x[:, 0])], 1)   # derivatives (N, D); NaN = unknown
model = sobolev.fit(x, y, dydx)    # chooses its derivative weight by cross-validation; warns when it fits nothing
print(model)                       # what it chose, how well it fits (training and held-out R²)
p = model.predict_with_spread(rng.uniform(-2, 2, (5, 2)))          # values, derivatives, ensemble spread
