"""Section 4.3, synthetic gradients from Sobolev-trained critics: ``config`` (params),
``decoupled`` (training with SG modules), ``experiment`` (the SM's network and data, Table 1's
runs), ``cifar`` (the archive), ``imagenet`` (the torchrun ResNet-50 path), ``report``."""
