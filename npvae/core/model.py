r"""The VAE's networks, its loss -ELBO and the hand-written gradient of that loss.

Forward, for a batch ``x`` of N rows (and optional metadata ``y`` for a conditional VAE)::

    h = encoder([x | y])                    # (N, 2Z): [mu | logvar]
    z = mu + exp(logvar / 2) * noise        # (L*N, Z), noise ~ N(0, I), L samples per row
    out = decoder([z | y])                  # (L*N, D): logits, or a Gaussian mean
    loss = recon + beta * kl
    recon = (1 / (L N)) sum_{l,n,d} -log p(x_nd | z_ln)
    kl    = (1 / N) sum_{n,j} KL(N(mu_nj, exp(logvar_nj)) || N(0, 1))

The loss is **summed over data and latent dimensions and averaged over the batch** (and
over the L samples): per-example -ELBO, the quantity papers report in nats.

Backward runs the same path in reverse (see ``docs/math.md``), writing every gradient
into the one flat buffer ``model.params.grad``.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import numpy as np

from npvae.core import checks as chk
from npvae.core import memory, objectives, workspace
from npvae.core.layers import MLP
from npvae.core.likelihoods import get_likelihood
from npvae.core.params import ParamBuffer
from npvae.kernels import get_kernels

__all__ = ["VAEModel"]

_MAX_WORKSPACES = 4
FUSE_MAX_ROWS = 1  # train_step fuses weight gradients into Adam up to this many rows
# (measured on the 2-core VM: it pays at 1 row, not at 4 or 8)
FUSE_MIN_WEIGHTS = 1 << 15  # ... for weight matrices at least this large


class VAEModel(workspace.KeepsWorkspaces):
    r"""Gaussian-encoder VAE with a hand-written loss gradient.

    Parameters
    ----------
    input_dim : int, optional
        Data dimension D. If omitted the model is built on the first call that sees data.
    latent_dim : int, default 20
        Z, the size of the latent space.
    hidden : sequence of int, default (400,)
        Hidden layer sizes of the encoder; the decoder mirrors them. ``()`` makes both
        networks a single (linear) layer.
    encoder_hidden, decoder_hidden : sequence of int, optional
        Override ``hidden`` for one network.
    activation : str or Activation, default "relu"
        Hidden-layer activation.
    likelihood : str, dict or Likelihood, default "bernoulli"
        ``"bernoulli"`` (decoder emits logits), ``"gaussian"`` (fixed variance),
        ``"gaussian-scalar"`` or ``"gaussian-diag"`` (learned variance); or a spec with its
        options, ``{"name": "gaussian", "variance": 0.5}``, as :meth:`config` writes it.
    variance : float, default 1.0
        Fixed (or initial) variance of a Gaussian likelihood given by name (a spec's or an
        instance's own value wins).
    beta : float, default 1.0
        Weight of the KL term (beta-VAE).
    n_samples : int, default 1
        L, reparameterised samples per data point; the loss averages over them.
    free_bits : float, default 0.0
        Minimum KL per latent dimension (nats, batch-averaged) below which the KL of that
        dimension is held constant (Kingma et al. 2016).
    cond_dim : int, default 0
        Size of the metadata vector ``y`` of a conditional VAE (0: unconditional).
    dtype : {"float32", "float64"}, default "float32"
    init : {"auto", "he", "glorot"}, default "auto"
    seed : int, default 0
        Seeds the weight initialisation and the model's own noise generator.
    backend : {"numba", "numpy"}, optional
        Kernel backend; default from ``NPVAE_BACKEND`` (see :mod:`npvae.kernels`).
    """

    def __init__(self, input_dim=None, latent_dim=20, hidden=(400,), *, encoder_hidden=None,
                 decoder_hidden=None, activation="relu", likelihood="bernoulli", variance=1.0,
                 beta=1.0, n_samples=1, free_bits=0.0, cond_dim=0, dtype="float32",
                 init="auto", seed=0, backend=None):
        self.latent_dim = chk.positive_int(latent_dim, "latent_dim")
        self.hidden = self._sizes(hidden, "hidden")
        self.encoder_hidden = self._sizes(
            self.hidden if encoder_hidden is None else encoder_hidden, "encoder_hidden")
        self.decoder_hidden = self._sizes(
            tuple(reversed(self.hidden)) if decoder_hidden is None else decoder_hidden,
            "decoder_hidden")
        self.activation = activation
        self.variance = variance = chk.positive_float(variance, "variance")  # even unused
        self.likelihood = get_likelihood(likelihood, defaults={"variance": variance})
        self.beta = chk.nonnegative_float(beta, "beta")
        self.n_samples = chk.positive_int(n_samples, "n_samples")
        self.free_bits = chk.nonnegative_float(free_bits, "free_bits")
        self.cond_dim = chk.positive_int(cond_dim, "cond_dim", minimum=0)
        self.dtype = chk.float_dtype(dtype)
        self.init = chk.choice(init, "init", ("auto", "he", "glorot"))
        self.seed = chk.seed(seed)
        self.kernels = get_kernels(backend)
        self.backend = self.kernels.name
        self.input_dim = None
        self.params = None
        if input_dim is not None:
            self.build(chk.positive_int(input_dim, "input_dim"))

    @staticmethod
    def _sizes(sizes, argname):
        return chk.layer_sizes(sizes, argname)

    # ------------------------------------------------------------------------ building
    def build(self, input_dim):
        """Create the networks and the parameter buffer for data of dimension ``input_dim``,
        and initialise the weights from ``seed``."""
        d, z, c = int(input_dim), self.latent_dim, self.cond_dim
        self.check_memory(d)
        shapes = self.param_shapes(d)
        self.input_dim = d
        self.encoder = MLP([d + c, *self.encoder_hidden, 2 * z], self.activation, name="encoder")
        self.decoder = MLP([z + c, *self.decoder_hidden, d], self.activation, name="decoder")
        self.params = ParamBuffer(shapes, self.dtype)
        for part in (self.encoder, self.decoder, self.likelihood):
            part.bind(self.params)
        init_rng = np.random.default_rng([self.seed, 0])
        self.encoder.initialize(init_rng, self.init)
        self.decoder.initialize(init_rng, self.init)
        self.likelihood.initialize()
        self.rng = np.random.default_rng([self.seed, 1])  # the model's own noise stream
        self._workspaces = self._new_workspaces()
        return self

    def param_shapes(self, input_dim):
        """Ordered names and shapes of the parameters for ``input_dim`` features, as
        :meth:`build` lays them out (nothing is allocated)."""
        d, z, c = int(input_dim), self.latent_dim, self.cond_dim
        shapes = OrderedDict()
        shapes.update(MLP([d + c, *self.encoder_hidden, 2 * z], self.activation,
                          name="encoder").param_shapes())
        shapes.update(MLP([z + c, *self.decoder_hidden, d], self.activation,
                          name="decoder").param_shapes())
        shapes.update(self.likelihood.param_shapes(d))
        return shapes

    def check_memory(self, input_dim, batch_size=None):
        """Raise :class:`~npvae.core.memory.MemoryBudgetError` (a ValueError) if the model for
        ``input_dim`` features (and, with ``batch_size``, its training) would not fit in memory;
        checked before anything is allocated."""
        args = (input_dim, self.latent_dim, self.encoder_hidden, self.decoder_hidden,
                self.cond_dim, self.dtype.itemsize)
        what = (f"a VAE with input_dim={input_dim}, latent_dim={self.latent_dim}, "
                f"encoder_hidden={self.encoder_hidden}, decoder_hidden={self.decoder_hidden}")
        if batch_size is None:
            memory.check_memory(memory.model_bytes(*args), what,
                                "use smaller hidden layers or a smaller latent_dim")
        else:
            memory.check_memory(memory.training_bytes(*args, batch_size, self.n_samples),
                                f"training {what} with batch_size={batch_size} and "
                                f"n_samples={self.n_samples}",
                                "use a smaller batch_size, fewer samples, or smaller layers")

    def _new_workspaces(self):
        return workspace.Workspaces(partial(workspace.buffers, self), _MAX_WORKSPACES)

    def _require_built(self):
        if self.params is None:
            raise RuntimeError("the model is not built yet: pass input_dim=..., or call fit()")

    def named_parameters(self):
        """Ordered dict of parameter name to a view into ``params.data``.

        Layout: ``encoder.{i}.W`` (in, out) and ``encoder.{i}.b`` (out,) for each hidden
        layer, ``encoder.out.W`` (H, 2Z) whose columns ``[:Z]`` give mu and ``[Z:]``
        logvar, then the same for ``decoder.*`` (``decoder.out`` emits the likelihood's
        parameters), then ``likelihood.logvar`` for a learned Gaussian variance.
        Writing into a view changes the model; copy to keep a snapshot.
        """
        self._require_built()
        return self.params.named()

    def named_gradients(self):
        """Like :meth:`named_parameters`, for the gradient buffer."""
        self._require_built()
        return self.params.named_grads()

    # ---------------------------------------------------------------------- validation
    def check_input(self, x, y=None, *, x_name="x", y_name="y"):
        """Validate a batch for this (built) model and return it as ``(x, y)``.

        ``x`` must be (N, input_dim), finite and in the likelihood's support; ``y`` must be
        given exactly when the model is conditional, as (N, cond_dim). Both come back as
        arrays of the model's dtype (``y`` None for an unconditional model). The names
        appear in the error messages. Raises RuntimeError if the model is not built yet.
        """
        self._require_built()
        x = self._check_x(x, x_name)
        return x, self._check_y(y, x.shape[0], y_name)

    def _check_x(self, x, argname="x"):
        if self.params is None:
            x0 = chk.as_data(x, self.dtype, argname)
            self.build(x0.shape[1])
        x = chk.as_data(x, self.dtype, argname, dim=self.input_dim, owner=type(self).__name__)
        self.likelihood.validate(x, argname)
        return x

    def _check_y(self, y, n, argname="y"):
        if self.cond_dim == 0:
            if y is not None:
                raise ValueError(f"{argname} was given but the model is not conditional; "
                                 "build it with cond_dim=... to use metadata")
            return None
        if y is None:
            raise ValueError(
                f"this conditional model needs {argname} of shape (n, {self.cond_dim})")
        y = chk.as_data(y, self.dtype, argname, dim=self.cond_dim)
        if y.shape[0] != n:
            raise ValueError(f"{argname} has {y.shape[0]} rows but the batch has {n}")
        return y

    # ------------------------------------------------------------------------ workspace
    def _workspace(self, key):
        """The buffers for ``key``: a batch size ``n`` (:meth:`loss_and_grad`),
        ``("samples", n, S)`` (an importance-weighted objective's S = L k samples per row)
        or ``("infer", n)`` (:meth:`reconstruct_mean`); see :mod:`npvae.core.workspace`."""
        return self._workspaces(key)

    # --------------------------------------------------------------------- loss and grad
    def loss_and_grad(self, x, y=None, *, noise=None, rng=None, beta=None, free_bits=None,
                      target=None, check_input=True, objective=None, k=None, _defer=()):
        r"""Return -ELBO of the batch and write its gradient into ``params.grad``.

        Parameters
        ----------
        x : array_like (N, D)
        y : array_like (N, C), optional
            Metadata of a conditional VAE.
        noise : array_like (L, N, Z), optional
            The reparameterisation noise. Pass it to reproduce a loss and gradient exactly;
            otherwise it is drawn from ``rng`` (default: the model's own generator).
        rng : numpy.random.Generator, optional
        beta, free_bits : float, optional
            Override the model's values for this call (KL warm-up schedules do).
        target : array_like (N, D), optional
            What the decoder is scored against, when it differs from the encoder's input
            ``x`` (a de-noising VAE encodes a corrupted ``x`` and reconstructs the clean
            ``target``). Default: ``x``.
        check_input : bool, default True
            Validate ``x`` (shape, finiteness, support). A trainer that validated the whole
            dataset once passes False.
        objective : {"elbo", "iwae", "iwae-dreg"}, optional
            The loss. Default (None, ``"elbo"``): -ELBO as above. ``"iwae"``: the mean over
            the batch and the L samples of minus the k-sample importance-weighted bound
            (Burda et al. 2016), ``beta`` weighting ``log p(z) - log q(z|x)`` in each log
            weight; ``"iwae-dreg"``: the same loss with the doubly reparameterised encoder
            gradient (Tucker et al. 2019). See :mod:`npvae.core.objectives`. ``noise``
            then has shape (L k, N, Z), sample ``l k + i`` the i-th of bound ``l``; free
            bits do not apply.
        k : int, optional
            Importance samples per bound of the importance-weighted objectives (default 5).

        Returns
        -------
        loss : float
            ``recon + beta * kl`` (with free bits, ``recon + beta * sum_j max(kl_j, fb)``),
            averaged over the batch and the L samples, summed over dimensions.
        parts : dict
            ``{"loss", "recon", "kl"}``; ``kl`` is the unweighted KL (for the importance-
            weighted objectives, both are Monte-Carlo averages over the L k samples, and
            ``recon + beta * kl`` is minus the ELBO from those draws).
        """
        bound = objectives.get_objective(objective, k)  # None: the ELBO (k names kernels below)
        if check_input or self.params is None:
            x = self._check_x(x)
            if target is not None:
                target = self._check_x(target, "target")
                if target.shape != x.shape:
                    raise ValueError(f"target has shape {target.shape}, x has {x.shape}")
        target = x if target is None else target
        n = x.shape[0]
        y = self._check_y(y, n)
        beta = self.beta if beta is None else chk.nonnegative_float(beta, "beta")
        fb = self.free_bits if free_bits is None else chk.nonnegative_float(free_bits, "free_bits")
        if bound is None:
            ws = self._workspace(n)
        elif fb > 0:
            raise ValueError(f"free_bits={fb} holds the closed-form KL of the ELBO per "
                             f"dimension; objective={bound.name!r} has no such KL: set "
                             "free_bits=0")
        else:
            ws = self._workspace(("samples", n, bound.samples(self, n)))
        k, L, z = self.kernels, ws["noise"].shape[0], self.latent_dim
        workspace.fill_noise(ws["noise"], noise, rng or self.rng,
                             f"({'L' if bound is None else 'L k'}, N, Z)")
        noise2 = ws["noise"].reshape(L * n, z)

        # forward
        enc_in = x
        if y is not None:
            enc_in = ws["enc_in"]
            enc_in[:, :self.input_dim] = x
            enc_in[:, self.input_dim:] = y
        h = self.encoder.forward(enc_in, ws["enc"], k)  # (N, 2Z)
        dec_in = ws["dec_in"]
        k.sample_kl(h, noise2, dec_in[:, :z], ws["kl_col"])  # z, per-dim KL sums
        if y is not None:
            dec_in.reshape(L, n, -1)[:, :, z:] = y
        out = self.decoder.forward(dec_in, ws["dec"], k)  # (L*N, D)
        if bound is not None:  # an importance-weighted bound: npvae.core.objectives
            return bound.loss_and_grad(self, h, noise2, enc_in, dec_in, out, target, beta, ws,
                                       _defer)
        scale = 1.0 / (L * n)
        recon = self.likelihood.nll_and_grad(out, target, scale, ws["dout"], k) * scale

        kl_col, w = ws["kl_col"], ws["w"]  # (Z,): KL per dimension summed over the batch
        kl = float(kl_col.sum()) / n
        if fb > 0:  # free bits: a dimension whose batch-mean KL is below fb costs fb, flat
            kl_term = 0.0
            for j in range(z):
                kl_j = float(kl_col[j]) / n
                w[j] = beta / n if kl_j > fb else 0.0
                kl_term += max(kl_j, fb)
        else:
            w.fill(beta / n)
            kl_term = kl
        loss = recon + beta * kl_term

        # backward
        ddec_in = self.decoder.backward(ws["dout"], dec_in, ws["dec"], True, k, _defer)
        k.sample_kl_backward(h, noise2, ddec_in[:, :z], w, ws["dh"])  # (N, 2Z)
        self.encoder.backward(ws["dh"], enc_in, ws["enc"], False, k, _defer)
        return loss, {"loss": loss, "recon": recon, "kl": kl}

    def train_step(self, x, optimizer, y=None, *, reduce=None, **loss_kw):
        """One optimisation step: :meth:`loss_and_grad`, then ``optimizer.step()``.

        With :class:`~npvae.core.optim.Adam` (no clipping) and a small batch, the gradients of the
        large weight matrices are never formed: each is the product ``x.T @ delta`` of two
        thin matrices (a layer's input and its delta, both in this step's workspace), and
        the Adam kernel computes it while updating, which saves writing and re-reading the
        gradient (``Adam.step(deferred=...)``). The result equals the unfused step up to
        rounding; ``params.grad`` then lacks those blocks.

        On the numba backend with MKL GEMMs, the step first fits Numba's thread count to
        the cores other processes leave free (:mod:`npvae.plumbing.cores`); the results do
        not depend on the thread count.

        ``reduce(loss, parts) -> (loss, parts)``, if given, runs between the backward pass
        and the update, when the whole gradient is in ``params.grad``: data-parallel
        training sums the ranks' gradients there (:mod:`npvae.training.distributed`). It
        turns the fused path off, since that path never forms the fused blocks.

        Raises FloatingPointError, before any update, if the loss (after ``reduce``) is
        not finite. Returns ``(loss, parts)`` as :meth:`loss_and_grad` does.
        """
        from npvae.core.optim import Adam

        if self.kernels.pace is not None:  # as many threads as there are free cores
            self.kernels.pace()
        fused = {}  # layer -> (x, delta), filled by the backward pass
        bound = objectives.get_objective(loss_kw.pop("objective", None), loss_kw.pop("k", None))
        rows = np.shape(x)[0] * self.n_samples * (1 if bound is None else bound.k)
        if (reduce is None and isinstance(optimizer, Adam) and optimizer.clip_norm is None
                and optimizer.params is self.params and rows <= FUSE_MAX_ROWS):
            fused = {layer: None for layer in self.encoder.layers + self.decoder.layers
                     if layer.n_in * layer.n_out >= FUSE_MIN_WEIGHTS}
        loss, parts = self.loss_and_grad(x, y, objective=bound, _defer=fused, **loss_kw)
        if reduce is not None:
            loss, parts = reduce(loss, parts)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss}; no update was made")
        if fused:
            optimizer.step(deferred={f"{layer.name}.W": xd for layer, xd in fused.items()})
        else:  # SGD.step takes no deferred blocks
            optimizer.step()
        return loss, parts

    # ------------------------------------------------------------------ encode / decode
    def _batches(self, n, size=1024):
        for start in range(0, n, size):
            yield slice(start, min(start + size, n))

    def encode(self, x, y=None):
        """Posterior parameters ``(mu, logvar)``, each (N, Z), of q(z | x[, y])."""
        self._require_built()
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        h = np.empty((x.shape[0], 2 * self.latent_dim), self.dtype)
        for s in self._batches(x.shape[0]):
            inp = x[s] if y is None else np.hstack([x[s], y[s]])
            h[s] = self.encoder.forward(inp, self.encoder.workspace(len(inp), self.dtype),
                                        self.kernels)
        z = self.latent_dim
        return h[:, :z].copy(), h[:, z:].copy()

    def decode(self, z, y=None, *, raw=False):
        """Decode latents (N, Z): the mean of p(x | z) (probabilities for Bernoulli), or
        with ``raw=True`` the decoder output itself (logits, Gaussian mean)."""
        self._require_built()
        z = chk.as_data(z, self.dtype, "z", dim=self.latent_dim)
        y = self._check_y(y, z.shape[0])
        out = np.empty((z.shape[0], self.input_dim), self.dtype)
        for s in self._batches(z.shape[0]):
            inp = z[s] if y is None else np.hstack([z[s], y[s]])
            out[s] = self.decoder.forward(inp, self.decoder.workspace(len(inp), self.dtype),
                                          self.kernels)
        return out if raw else self.likelihood.mean(out, self.kernels)

    def reconstruct_mean(self, x, y=None, *, check_input=True):
        """Mean of p(x | z = mu(x)): encode, take the posterior mean, decode; (N, D).

        The fast inference path: it runs in reusable per-batch-size buffers (no allocation
        but the returned copy), so it suits serving and benchmarks.
        """
        self._require_built()
        if check_input:
            x = chk.as_data(x, self.dtype, "x", dim=self.input_dim)
        n, z = x.shape[0], self.latent_dim
        y = self._check_y(y, n)
        ws = self._workspace(("infer", n))
        enc_in = x
        if y is not None:
            enc_in = ws["enc_in"]
            enc_in[:, :self.input_dim] = x
            enc_in[:, self.input_dim:] = y
        h = self.encoder.forward(enc_in, ws["enc"], self.kernels)
        dec_in = ws["dec_in"]
        dec_in[:, :z] = h[:, :z]
        if y is not None:
            dec_in[:, z:] = y
        out = self.decoder.forward(dec_in, ws["dec"], self.kernels)
        return self.likelihood.mean(out, self.kernels)

    def config(self):
        """JSON-serialisable constructor arguments (with ``input_dim``) that rebuild the model."""
        act = self.activation
        return {
            "input_dim": self.input_dim, "latent_dim": self.latent_dim,
            "encoder_hidden": list(self.encoder_hidden),
            "decoder_hidden": list(self.decoder_hidden),
            "activation": act if isinstance(act, str) else {"name": act.name, "param": act.param},
            "likelihood": self.likelihood.spec(),  # the likelihood's own settings
            "beta": self.beta, "n_samples": self.n_samples, "free_bits": self.free_bits,
            "cond_dim": self.cond_dim, "dtype": self.dtype.name, "init": self.init,
            "seed": self.seed,
        }

    def __repr__(self):
        d = self.input_dim if self.input_dim is not None else "?"
        return (f"{type(self).__name__}(input_dim={d}, latent_dim={self.latent_dim}, "
                f"encoder={self.encoder_hidden}, decoder={self.decoder_hidden}, "
                f"likelihood={self.likelihood.name!r}, beta={self.beta}, "
                f"cond_dim={self.cond_dim}, dtype={self.dtype.name}, backend={self.backend!r})")
