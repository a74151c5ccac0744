"""Framework peers for the npvae benchmarks.

Each peer module (``torch_vae``, ``jax_vae``) exposes the same small interface:

``available() -> bool``
    True when the framework imports; it is imported lazily and guarded.
``why_unavailable() -> str | None``
    The import error (or other reason) when ``available()`` is False.
``version() -> str | None``
    The framework's version string, without importing it.
``VARIANTS``
    Tuple of variant names accepted by ``make``; ``VARIANTS[0]`` is the default.
``make(weights, lr=1e-3, threads=2, variant=VARIANTS[0]) -> peer``
    Build the reference VAE (784-400-(20+20), 20-400-784, ReLU, Bernoulli logits,
    Adam betas 0.9/0.999, eps 1e-8, PyTorch form, float32) from a dict of float32
    NumPy arrays in npvae's layout (see ``WEIGHT_SHAPES``).

The returned peer object has:

``peer.prep(x, noise=None)``
    Convert NumPy arrays to the framework's arrays once, outside any timed loop.
    Returns ``x_t`` (if noise is None) or ``(x_t, noise_t)``.
``peer.loss(x, noise) -> float``
    Forward only: the loss (mean over the batch of the summed Bernoulli NLL + KL).
``peer.train_step(x, noise) -> None``
    Forward + backward + Adam step: the timed unit.  Takes prepared arrays (NumPy
    arrays are accepted, but are then converted in every call).
``peer.infer(x)``
    Encode to mu and decode mu to Bernoulli probabilities (inference throughput);
    returns the framework's array.
``peer.sync() -> None``
    Wait for queued work (a no-op for torch on CPU; JAX dispatches asynchronously).
``peer.reset(weights) -> None``
    Load weights and zero the Adam state in place (no recompile): start each window afresh.
``peer.denormal_fraction() -> float``
    Fraction of Adam m/v entries that are float32 denormals (a slow path on x86 CPUs).
``peer.get_weights() -> dict``
    Current parameters back in npvae's layout (float32 NumPy copies).
``peer.name``, ``peer.variant``, ``peer.threads``, ``peer.notes``
    Identification, and a list of strings describing what was set up.

The loss convention is that of npvae: for noise of shape (L, N, 20),
loss = sum over pixels and samples of BCE-with-logits / (L*N)
     + sum over latent dims of 0.5*(mu^2 + exp(logvar) - 1 - logvar) / N.
"""

WEIGHT_SHAPES = {
    "encoder.0.W": (784, 400),
    "encoder.0.b": (400,),
    "encoder.out.W": (400, 40),
    "encoder.out.b": (40,),
    "decoder.0.W": (20, 400),
    "decoder.0.b": (400,),
    "decoder.out.W": (400, 784),
    "decoder.out.b": (784,),
}
LATENT = 20
N_PARAMS = sum(
    (s[0] * s[1] if len(s) == 2 else s[0]) for s in WEIGHT_SHAPES.values()
)  # 652824


def random_weights(seed=0, dtype="float32"):
    """Random weights in npvae's layout (Glorot-uniform W, small random b)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in WEIGHT_SHAPES.items():
        if len(shape) == 2:
            lim = np.sqrt(6.0 / (shape[0] + shape[1]))
            out[name] = rng.uniform(-lim, lim, size=shape).astype(dtype)
        else:
            out[name] = rng.uniform(-0.05, 0.05, size=shape).astype(dtype)
    return out


def check_weights(weights):
    """Raise ValueError naming the problem if ``weights`` is not in npvae's layout."""
    missing = [k for k in WEIGHT_SHAPES if k not in weights]
    if missing:
        raise ValueError(f"weights missing {missing}; expected keys {list(WEIGHT_SHAPES)}")
    for k, shape in WEIGHT_SHAPES.items():
        if tuple(weights[k].shape) != shape:
            raise ValueError(f"weights[{k!r}] has shape {weights[k].shape}, expected {shape}")


def peer_modules():
    """Return {name: module} of the peer modules (importing them does not import frameworks)."""
    from . import jax_vae, torch_vae

    return {"torch": torch_vae, "jax": jax_vae}
