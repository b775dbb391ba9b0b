"""FedProx's Synthetic(alpha, beta) data (Li et al., 2020, section 5.1).

Each device ``k`` has its own softmax-regression model and its own feature
distribution:

- ``u_k ~ N(0, alpha)``, ``W_k ~ N(u_k, 1)`` (60 x 10), ``b_k ~ N(u_k, 1)`` (10);
- ``B_k ~ N(0, beta)``, ``v_k ~ N(B_k, 1)`` (60), ``x ~ N(v_k, Sigma)`` with
  ``Sigma`` diagonal, ``Sigma_jj = j^-1.2``;
- ``y = argmax(softmax(W_k x + b_k))``.

``alpha`` controls how much the devices' models differ, ``beta`` how much their
features do. In the IID variant every device shares one ``W, b ~ N(0, 1)`` and
``v_k = 0``. As in the paper's generator, ``alpha`` and ``beta`` are standard
deviations, and device sizes are ``int(lognormal(4, 2)) + 50`` (capped here, since the
log-normal tail occasionally yields devices with tens of thousands of samples).
"""

from __future__ import annotations

import numpy as np

from fedpilot.data._base import ArrayDataset

__all__ = ["SYNTHETIC_CLASSES", "SYNTHETIC_FEATURES", "generate_synthetic"]

SYNTHETIC_FEATURES = 60
SYNTHETIC_CLASSES = 10


def generate_synthetic(
    num_devices: int,
    *,
    alpha: float,
    beta: float,
    iid: bool,
    rng: np.random.Generator,
    min_samples: int = 50,
    max_samples: int = 1000,
) -> list[ArrayDataset]:
    """Generate one dataset per device.

    Args:
        num_devices: How many devices (learners).
        alpha: Spread of the devices' models (ignored when ``iid``).
        beta: Spread of the devices' feature means (ignored when ``iid``).
        iid: Share one model across devices and centre every device's features at 0.
        rng: The only source of randomness.
        min_samples: Added to every device's log-normal size (the paper uses 50).
        max_samples: Cap on a device's size.

    Returns:
        ``num_devices`` datasets with float32 features (n, 60) and int64 labels in [0, 10).
    """
    if num_devices < 1:
        raise ValueError(f"`num_devices` must be >= 1, got num_devices={num_devices}")
    if alpha < 0 or beta < 0:
        raise ValueError(f"`alpha` and `beta` must be >= 0, got alpha={alpha}, beta={beta}")
    if not 1 <= min_samples <= max_samples:
        raise ValueError(
            "need 1 <= min_samples <= max_samples, "
            f"got min_samples={min_samples}, max_samples={max_samples}"
        )
    d, c = SYNTHETIC_FEATURES, SYNTHETIC_CLASSES
    sizes = np.minimum(rng.lognormal(4, 2, num_devices).astype(np.int64) + min_samples, max_samples)
    # Sigma is diagonal, so x = v + sqrt(diag) * z needs no Cholesky factor.
    std = np.power(np.arange(1, d + 1, dtype=np.float64), -1.2) ** 0.5
    model_means = rng.normal(0, alpha, num_devices)
    feature_shifts = rng.normal(0, beta, num_devices)
    shared_w = rng.normal(0, 1, (d, c))
    shared_b = rng.normal(0, 1, c)
    devices = []
    for k in range(num_devices):
        if iid:
            w, b, v = shared_w, shared_b, np.zeros(d)
        else:
            w = rng.normal(model_means[k], 1, (d, c))
            b = rng.normal(model_means[k], 1, c)
            v = rng.normal(feature_shifts[k], 1, d)
        x = v + rng.standard_normal((int(sizes[k]), d)) * std
        # argmax of the logits equals argmax of their softmax.
        y = np.argmax(x @ w + b, axis=1)
        devices.append(ArrayDataset(x.astype(np.float32), y.astype(np.int64)))
    return devices
