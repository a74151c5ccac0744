r"""The semi-supervised M2 model of Kingma et al. (2014) and the hand-written gradient of its
bound, with exact enumeration over the classes.

Generative model: :math:`p(y) = 1/K` (uniform), :math:`p(z) = \mathcal N(0, I)`,
:math:`p(x \mid y, z)` a decoder on ``[z | one_hot(y)]``. Inference model: the classifier
:math:`q(y \mid x)` (:class:`~npvae.core.classifier.Classifier`) and a Gaussian encoder
:math:`q(z \mid x, y)` on ``[x | one_hot(y)]``. Per example::

    E(x, y) = -ELBO(x, y) = E_q(z|x,y)[-log p(x|y,z)] + KL(q(z|x,y) || p(z)) - log p(y)
    labelled (x, y):   E(x, y) + alpha * (-log q(y|x))
    unlabelled x:      sum_y q(y|x) E(x, y) - H(q(y|x))  =  sum_y q(y|x) (E(x, y) + log q(y|x))

The loss of a batch is ``sum_n w_n loss_n`` with sample weights ``w`` (default ``1/N``: the
mean). The unlabelled sum over classes is exact: every unlabelled row is copied once per
class and the batch goes through the encoder and decoder **once**, one GEMM per layer.

Row layout. With ``N_l`` labelled and ``N_u`` unlabelled rows in the batch, the encoder sees
``M = N_l + K * N_u`` rows: the labelled rows first (in batch order), then the unlabelled ones
**class-major**, row ``N_l + k * N_u + j`` being unlabelled row ``j`` with class ``k``. The
decoder's ``L * M`` rows are sample-major as everywhere in npvae (row ``r`` belongs to encoder
row ``r % M``), so the likelihood's per-row kernel scores row ``r`` against target row
``r % M``, each with its own weight: ``w_n / L`` for a labelled row, ``w_n q(k|x_n) / L`` for a
copy. ``docs/math.md`` (section 10) derives the backward pass.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from npvae.core import checks as chk
from npvae.core import memory, workspace
from npvae.core.classifier import (
    Classifier,
    check_labels,
    cross_entropy_grad,
    entropy_grad,
    expectation_grad,
    log_softmax,
)
from npvae.core.layers import MLP
from npvae.core.likelihoods import get_likelihood
from npvae.core.params import ParamBuffer
from npvae.kernels import get_kernels

__all__ = ["M2Model"]

_MAX_WORKSPACES = 4


class M2Model(workspace.KeepsWorkspaces):
    r"""M2: classifier q(y|x), encoder q(z|x,y), decoder p(x|y,z), p(y) uniform, p(z) = N(0, I).

    Parameters
    ----------
    n_classes : int
        K (at least 2).
    input_dim : int, optional
        D; if omitted the model is built by :meth:`build` (``fit`` does it).
    latent_dim : int, default 20
    hidden : sequence of int, default (256,)
        Hidden layers of the encoder; the decoder mirrors them.
    encoder_hidden, decoder_hidden, classifier_hidden : sequence of int, optional
        Override ``hidden`` for one network (the classifier's default is ``hidden``).
    activation : str or Activation, default "relu"
        Hidden-layer activation of all three networks (Kingma et al. used softplus; on
        the digits ReLU did as well at half the time per step).
    likelihood : str or Likelihood, default "bernoulli"
    variance : float, default 1.0
        Fixed (or initial) variance of a Gaussian likelihood.
    n_samples : int, default 1
        L, reparameterised samples per (row, class).
    dtype, init, seed, backend
        As for :class:`~npvae.core.model.VAEModel`.
    """

    def __init__(self, n_classes, input_dim=None, latent_dim=20, hidden=(256,), *,
                 encoder_hidden=None, decoder_hidden=None, classifier_hidden=None,
                 activation="relu", likelihood="bernoulli", variance=1.0, n_samples=1,
                 dtype="float32", init="auto", seed=0, backend=None):
        self.n_classes = chk.positive_int(n_classes, "n_classes", minimum=2)
        self.latent_dim = chk.positive_int(latent_dim, "latent_dim")
        self.hidden = _sizes(hidden, "hidden")
        self.encoder_hidden = _sizes(self.hidden if encoder_hidden is None else encoder_hidden,
                                     "encoder_hidden")
        self.decoder_hidden = _sizes(self.hidden[::-1] if decoder_hidden is None
                                     else decoder_hidden, "decoder_hidden")
        self.classifier_hidden = _sizes(self.hidden if classifier_hidden is None
                                        else classifier_hidden, "classifier_hidden")
        self.activation = activation
        if isinstance(likelihood, str):
            kw = {} if likelihood.lower() == "bernoulli" else {"variance": variance}
            self.likelihood = get_likelihood(likelihood, **kw)
        else:
            self.likelihood = get_likelihood(likelihood)
        self.n_samples = chk.positive_int(n_samples, "n_samples")
        self.dtype = chk.float_dtype(dtype)
        if init not in ("auto", "he", "glorot"):
            raise ValueError(f"init must be 'auto', 'he' or 'glorot', got {init!r}")
        self.init = init
        self.seed = chk.positive_int(seed, "seed", minimum=0)
        self.kernels = get_kernels(backend)
        self.backend = self.kernels.name
        self.input_dim = None
        self.params = None
        if input_dim is not None:
            self.build(chk.positive_int(input_dim, "input_dim"))

    # ------------------------------------------------------------------------ building
    def build(self, input_dim):
        """Create the three networks and the parameter buffer; initialise from ``seed``."""
        d = int(input_dim)
        self.check_memory(d)
        self.classifier, self.encoder, self.decoder = self._networks(d)
        self.input_dim = d
        self.params = ParamBuffer(self.param_shapes(d), self.dtype)
        for part in (self.classifier, self.encoder, self.decoder, self.likelihood):
            part.bind(self.params)
        init_rng = np.random.default_rng([self.seed, 0])
        for part in (self.classifier, self.encoder, self.decoder):
            part.initialize(init_rng, self.init)
        self.likelihood.initialize()
        self.rng = np.random.default_rng([self.seed, 1])
        self._workspaces = self._new_workspaces()
        return self

    def _networks(self, d):
        z, k = self.latent_dim, self.n_classes
        return (Classifier(d, k, self.classifier_hidden, self.activation),
                MLP([d + k, *self.encoder_hidden, 2 * z], self.activation, name="encoder"),
                MLP([z + k, *self.decoder_hidden, d], self.activation, name="decoder"))

    def param_shapes(self, input_dim):
        """Ordered names and shapes of the parameters for ``input_dim`` features, as
        :meth:`build` lays them out (nothing is allocated)."""
        shapes = OrderedDict()
        for part in self._networks(int(input_dim)):
            shapes.update(part.param_shapes())
        shapes.update(self.likelihood.param_shapes(int(input_dim)))
        return shapes

    def check_memory(self, input_dim, batch_size=None):
        """Raise :class:`~npvae.core.memory.MemoryBudgetError` (a ValueError) if the model
        for ``input_dim`` features (and, with ``batch_size`` unlabelled rows, a training
        step over their K copies) would not fit in memory; nothing is allocated."""
        count = sum(int(np.prod(s, dtype=np.int64)) for s in
                    self.param_shapes(input_dim).values())
        what = (f"an M2 model with input_dim={input_dim}, n_classes={self.n_classes}, "
                f"latent_dim={self.latent_dim}, hidden={self.encoder_hidden}")
        nbytes = 2 * count * self.dtype.itemsize  # parameters and gradients
        if batch_size is not None:  # + Adam's moments, the rollback and best copies, and
            rows = self.n_classes * int(batch_size) * self.n_samples  # the widest activation
            widest = max(input_dim, *self.encoder_hidden, *self.decoder_hidden, 1)
            nbytes += self.dtype.itemsize * (4 * count + 4 * rows * widest)
        memory.check_memory(nbytes, what, "use smaller hidden layers, a smaller latent_dim "
                            "or batch_size")

    def _new_workspaces(self):
        return workspace.Workspaces(self._make_workspace, _MAX_WORKSPACES)

    def _require_built(self):
        if self.params is None:
            raise RuntimeError("the model is not built yet: pass input_dim=..., or call fit()")

    def named_parameters(self):
        """Ordered dict of parameter name to its view into ``params.data``: ``classifier.*``,
        ``encoder.*`` (input ``[x | one_hot(y)]``), ``decoder.*`` (input ``[z | one_hot(y)]``),
        then ``likelihood.logvar`` for a learned Gaussian variance."""
        self._require_built()
        return self.params.named()

    def _check_x(self, x, argname="x"):
        self._require_built()
        x = chk.as_data(x, self.dtype, argname, dim=self.input_dim)
        self.likelihood.validate(x, argname)
        return x

    def _one_hot(self, labels):
        out = np.zeros((len(labels), self.n_classes), self.dtype)
        out[np.arange(len(labels)), labels] = 1
        return out

    # ------------------------------------------------------------------------ workspace
    def _workspace(self, n_lab, n_unl):
        return self._workspaces((n_lab, n_unl))

    def _make_workspace(self, key):
        n_lab, n_unl = key
        K, L, z, d, dt = (self.n_classes, self.n_samples, self.latent_dim, self.input_dim,
                          self.dtype)
        m = n_lab + K * n_unl
        n = n_lab + n_unl
        enc_in = np.zeros((m, d + K), dt)
        enc_in[n_lab:, d:] = np.repeat(np.eye(K, dtype=dt), n_unl, axis=0)  # fixed classes
        ws = {"cls": self.classifier.workspace(n, dt), "enc_in": enc_in,
              "target": np.empty((m, d), dt), "enc": self.encoder.workspace(m, dt),
              "noise": np.empty((L, m, z), dt), "dec_in": np.empty((L * m, z + K), dt),
              "dec": self.decoder.workspace(L * m, dt), "dout": np.empty((L * m, d), dt),
              "nll": np.empty(L * m), "dh": np.empty((m, 2 * z), dt),
              "kl_col": np.empty(z, dt), "w0": np.zeros(z, dt)}
        return ws

    # --------------------------------------------------------------------- loss and grad
    def loss_and_grad(self, x, y, *, alpha=1.0, sample_weight=None, noise=None, rng=None,
                      check_input=True):
        r"""Return the M2 loss of a batch and write its gradient into ``params.grad``.

        Parameters
        ----------
        x : array_like (N, D)
        y : array_like (N,) of int
            The class of each labelled row, -1 for an unlabelled row.
        alpha : float, default 1
            Weight of the labelled rows' cross-entropy :math:`-\log q(y|x)`.
        sample_weight : array_like (N,), optional
            :math:`w_n`; the loss is :math:`\sum_n w_n \mathrm{loss}_n`. Default ``1/N``.
        noise : array_like (L, M, Z), optional
            The reparameterisation noise, ``M = N_l + K N_u`` rows in the layout of the
            module docstring; drawn from ``rng`` (default: the model's own) if not given.
        check_input : bool, default True

        Returns
        -------
        loss : float
        parts : dict
            ``loss``; ``labelled`` and ``unlabelled``, the mean loss of each kind of row
            (None without such rows); ``elbo_labelled``, the mean -ELBO(x, y) of the
            labelled rows; ``ce``, their mean cross-entropy; ``entropy``, the mean
            H(q(y|x)) of the unlabelled rows; ``recon`` and ``kl``, the means of the two
            -ELBO terms over all encoder rows, weighted like the loss.
        """
        self._require_built()
        if check_input:
            x = self._check_x(x)
            y = check_labels(y, x.shape[0], self.n_classes)
        else:
            y = np.asarray(y)
        n, K, L, Z, D = x.shape[0], self.n_classes, self.n_samples, self.latent_dim, \
            self.input_dim
        alpha = chk.nonnegative_float(alpha, "alpha")
        w = np.full(n, 1.0 / n) if sample_weight is None else np.asarray(sample_weight,
                                                                          np.float64)
        if w.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
        lab, unl = np.flatnonzero(y >= 0), np.flatnonzero(y < 0)
        nl, nu = len(lab), len(unl)
        m = nl + K * nu
        ws = self._workspace(nl, nu)
        k = self.kernels
        workspace.fill_noise(ws["noise"], noise, rng or self.rng, "(L, N_l + K N_u, Z)")
        noise2 = ws["noise"].reshape(L * m, Z)

        # classifier: log q(y | x) of every row
        logits = self.classifier.forward(x, ws["cls"], k)  # (N, K)
        logq = log_softmax(logits.astype(np.float64))
        q = np.exp(logq)

        # encoder and decoder on the N_l labelled rows and the K copies of the unlabelled
        target, enc_in = ws["target"], ws["enc_in"]
        target[:nl] = x[lab]
        target[nl:] = np.tile(x[unl], (K, 1))  # class-major copies
        enc_in[:, :D] = target
        enc_in[:nl, D:] = 0
        enc_in[np.arange(nl), D + y[lab]] = 1
        h = self.encoder.forward(enc_in, ws["enc"], k)  # (M, 2Z)
        dec_in = ws["dec_in"]
        k.sample_kl(h, noise2, dec_in[:, :Z], ws["kl_col"])
        dec_in.reshape(L, m, Z + K)[:, :, Z:] = enc_in[:, D:]
        out = self.decoder.forward(dec_in, ws["dec"], k)  # (L*M, D)
        mu, logvar = h[:, :Z].astype(np.float64), h[:, Z:].astype(np.float64)
        kl = 0.5 * np.sum(mu * mu + np.exp(logvar) - 1.0 - logvar, axis=1)  # (M,)

        # the weight of every encoder row: w_n, or w_n q(k | x_n) for copy k of row n
        rw = np.concatenate([w[lab], (w[unl][None, :] * q[unl].T).ravel()])  # (M,)
        row_scale = np.tile(rw / L, L).astype(self.dtype)
        nll = ws["nll"]
        self.likelihood.nll_rows_and_grad(out, target, row_scale, ws["dout"], nll, k)
        recon = nll.reshape(L, m).mean(axis=0)
        elbo = recon + kl + np.log(K)  # -ELBO(x, y) of every encoder row (M,)

        # the loss, and its gradient w.r.t. the logits
        dlogits = np.zeros((n, K))
        parts = {"labelled": None, "unlabelled": None, "elbo_labelled": None, "ce": None,
                 "entropy": None}
        loss = 0.0
        if nl:
            ce, dce = cross_entropy_grad(logq[lab], y[lab])
            per = elbo[:nl] + alpha * ce
            loss += float(np.dot(w[lab], per))
            dlogits[lab] = (alpha * w[lab])[:, None] * dce
            parts.update(labelled=float(per.mean()), elbo_labelled=float(elbo[:nl].mean()),
                         ce=float(ce.mean()))
        if nu:
            e_u = elbo[nl:].reshape(K, nu).T  # (N_u, K): -ELBO(x_j, k)
            f, df = expectation_grad(logq[unl], e_u)
            ent, dent = entropy_grad(logq[unl])
            per = f - ent
            loss += float(np.dot(w[unl], per))
            dlogits[unl] = w[unl][:, None] * (df - dent)
            parts.update(unlabelled=float(per.mean()), entropy=float(ent.mean()))
        tot = float(rw.sum()) or 1.0
        parts.update(loss=loss, recon=float(np.dot(rw, recon)) / tot,
                     kl=float(np.dot(rw, kl)) / tot)

        # backward: decoder, reparameterisation, per-row KL, encoder, classifier
        ddec_in = self.decoder.backward(ws["dout"], dec_in, ws["dec"], True, k)
        dh = ws["dh"]
        k.sample_kl_backward(h, noise2, ddec_in[:, :Z], ws["w0"], dh)  # the sampling path
        dh[:, :Z] += rw[:, None] * mu  # + w_r dKL_r/dmu_r
        dh[:, Z:] += rw[:, None] * 0.5 * np.expm1(logvar)  # + w_r dKL_r/dlogvar_r
        self.encoder.backward(dh, enc_in, ws["enc"], False, k)
        self.classifier.backward(dlogits.astype(self.dtype), x, ws["cls"], k)
        return loss, parts

    # --------------------------------------------------------------------------- inference
    def predict_log_proba(self, x, *, check_input=True):
        """``log q(y | x)``, shape (N, K)."""
        x = self._check_x(x) if check_input else x
        return self.classifier.log_proba(x, self.kernels)

    def encode(self, x, y):
        """Posterior parameters ``(mu, logvar)``, each (N, Z), of q(z | x, y) for classes
        ``y`` (N,) of int."""
        x = self._check_x(x)
        y = check_labels(y, x.shape[0], self.n_classes, unlabelled=False)
        h = np.empty((x.shape[0], 2 * self.latent_dim), self.dtype)
        for s in _batches(x.shape[0]):
            inp = np.hstack([x[s], self._one_hot(y[s])])
            h[s] = self.encoder.forward(inp, self.encoder.workspace(len(inp), self.dtype),
                                        self.kernels)
        z = self.latent_dim
        return h[:, :z].copy(), h[:, z:].copy()

    def decode(self, z, y, *, raw=False):
        """Decode latents (N, Z) as classes ``y`` (N,): the mean of p(x | y, z), or with
        ``raw=True`` the decoder output itself (logits, Gaussian mean)."""
        self._require_built()
        z = chk.as_data(z, self.dtype, "z", dim=self.latent_dim)
        y = check_labels(y, z.shape[0], self.n_classes, unlabelled=False)
        out = np.empty((z.shape[0], self.input_dim), self.dtype)
        for s in _batches(z.shape[0]):
            inp = np.hstack([z[s], self._one_hot(y[s])])
            out[s] = self.decoder.forward(inp, self.decoder.workspace(len(inp), self.dtype),
                                          self.kernels)
        return out if raw else self.likelihood.mean(out, self.kernels)

    def config(self):
        """JSON-serialisable constructor arguments (with ``input_dim``)."""
        act = self.activation
        return {
            "n_classes": self.n_classes, "input_dim": self.input_dim,
            "latent_dim": self.latent_dim, "encoder_hidden": list(self.encoder_hidden),
            "decoder_hidden": list(self.decoder_hidden),
            "classifier_hidden": list(self.classifier_hidden),
            "activation": act if isinstance(act, str) else {"name": act.name, "param": act.param},
            "likelihood": self.likelihood.name,
            "variance": getattr(self.likelihood, "variance", 1.0),
            "n_samples": self.n_samples, "dtype": self.dtype.name, "init": self.init,
            "seed": self.seed,
        }

    def __repr__(self):
        d = self.input_dim if self.input_dim is not None else "?"
        return (f"{type(self).__name__}(n_classes={self.n_classes}, input_dim={d}, "
                f"latent_dim={self.latent_dim}, encoder={self.encoder_hidden}, "
                f"decoder={self.decoder_hidden}, classifier={self.classifier_hidden}, "
                f"likelihood={self.likelihood.name!r}, dtype={self.dtype.name}, "
                f"backend={self.backend!r})")


def _sizes(sizes, argname):
    return chk.layer_sizes(sizes, argname)


def _batches(n, size=1024):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
