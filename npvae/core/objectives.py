r"""Importance-weighted training objectives: the IWAE bound (Burda et al. 2016) and its doubly
reparameterised encoder gradient, DReG (Tucker et al. 2019).

For a data point :math:`x` the model draws :math:`S = L k` reparameterised samples
:math:`z_{li} = \mu + \sigma \odot \epsilon_{li}`: ``L`` (the model's ``n_samples``)
independent bounds of ``k`` importance samples each. With the log weights

.. math::
    a_{li} = \log p(x | z_{li}) + \beta \left[\log p(z_{li}) - \log q(z_{li} | x)\right]

the loss is the mean over the batch and the ``L`` bounds of

.. math::
    -\log \frac1k \sum_{i=1}^k e^{a_{li}}
    \qquad (\beta = 1: \text{minus the k-sample IWAE bound on } \log p(x)),

and its gradient is the normalised-weight average of the per-sample gradients of
:math:`a`, with :math:`\tilde w_{li} = e^{a_{li}} / \sum_{i'} e^{a_{li'}}`. With
``k = 1`` the loss is the ELBO with a Monte-Carlo KL. ``"iwae-dreg"`` computes the same loss
and decoder gradient, and the encoder gradient of Tucker et al.: squared normalised weights,
the score-function term removed (q's density with its parameters held fixed). The KL has no
closed form inside the log of a sum, so none of it is used here. Derivations: docs/math.md,
"Importance-weighted objectives".

Rows are sample-major as everywhere in npvae: row ``r = s N + n`` holds sample
``s = l k + i`` of data point ``n``.
"""

from __future__ import annotations

import functools

import numpy as np

from npvae.core import checks as chk
from npvae.kernels._reference import log_prior_ratio  # the one definition (and the spec)

__all__ = ["OBJECTIVES", "DEFAULT_K", "ImportanceWeighted", "get_objective", "check_objective",
           "log_prior_ratio"]

OBJECTIVES = ("elbo", "iwae", "iwae-dreg")
DEFAULT_K = 5  # importance samples when an importance-weighted objective is named without k
MAX_ROWS = 1 << 22  # decoder rows (L k N) of one training step: 4M rows x 784 x 4 B = 13 GB


class ImportanceWeighted:
    r"""The k-sample importance-weighted loss and its gradient (IWAE, or DReG's encoder side).

    Parameters
    ----------
    k : int
        Importance samples per bound.
    dreg : bool, default False
        Use the doubly reparameterised encoder gradient.

    Notes
    -----
    Both estimators write the gradient of the encoder output and the sample in one form
    (docs/math.md, "Importance-weighted objectives"). With :math:`s_r = \tilde w_r / (L N)`
    the weight of row r, the decoder's gradient
    :math:`\delta z_r = s_r \partial_{z_r} \mathrm{nll}_r` and :math:`\sigma` the encoder's
    standard deviation:

    .. math::
        \text{IWAE:}\quad \partial z_r = \delta z_r + \beta s_r z_r, \qquad
        \partial \ell \mathrel{+}= -\frac{\beta}{2N}

    .. math::
        \text{DReG:}\quad \partial z_r = \rho_r \left(\delta z_r + \beta s_r (z_r -
        \epsilon_r / \sigma)\right), \qquad \rho_r = 1 - \beta + \beta \tilde w_r

    and :math:`\partial\mu_n, \partial\ell_n` follow from :math:`\partial z` through the
    reparameterisation. For :math:`\beta = 1` DReG's coefficient :math:`s_r \rho_r` is
    :math:`\tilde w_r^2 / (LN)`. Two kernels do the work over (L k, N, Z):
    ``iwae_weights`` (the log weights, the bound, the weights) and ``iwae_backward``.
    """

    def __init__(self, k, dreg=False):
        self.k = chk.positive_int(k, "k")
        self.dreg = bool(dreg)
        self.name = "iwae-dreg" if self.dreg else "iwae"

    def __repr__(self):
        return f"ImportanceWeighted(k={self.k}, dreg={self.dreg})"

    def samples(self, model, n):
        """Decoder samples per data point, ``L k``; raises if a step would be too large."""
        s = model.n_samples * self.k
        if s * n > MAX_ROWS:
            raise ValueError(
                f"{model.n_samples} x {self.k} samples of {n} points are {s * n} decoder rows "
                f"in one step (at most {MAX_ROWS}); use a smaller k or batch size")
        return s

    def rho(self, wn, beta, out):
        r"""The per-row factor :math:`\rho` of :func:`~npvae.kernels._reference.iwae_backward`:
        1 for IWAE, :math:`1 - \beta + \beta \tilde w` for DReG."""
        if self.dreg:
            np.multiply(wn, beta, out=out, casting="same_kind")
            out += 1.0 - beta
        else:
            out.fill(1.0)
        return out

    @staticmethod
    def _buffers(ws, rows, dtype):
        buf = ws.get("iw")
        if buf is None:
            buf = ws["iw"] = {"ones": np.ones(rows, dtype), "scale": np.empty(rows, dtype),
                              "rho": np.empty(rows, dtype), "nll": np.empty(rows),
                              "ratio": np.empty(rows), "wn": np.empty(rows)}
        return buf

    def loss_and_grad(self, model, h, noise, enc_in, dec_in, out, target, beta, ws, defer=()):
        r"""Loss and gradient from the forward of :meth:`VAEModel.loss_and_grad`.

        Parameters
        ----------
        model : VAEModel
        h : ndarray (N, 2Z)
            The encoder output ``[mu | logvar]``.
        noise : ndarray (L k N, Z)
            The noise, sample-major.
        enc_in, dec_in, out : ndarray
            Encoder input, decoder input ``[z | y]`` (L k N rows), decoder output.
        target : ndarray (N, D)
            What the decoder is scored against.
        beta : float
            Weight of :math:`\log p(z) - \log q(z|x)` in each log weight.
        ws : dict
            The model's workspace for this batch (its ``dout``, ``dh``, ``dec``, ``enc``).
        defer : tuple
            Layers whose weight gradients ``train_step`` forms inside Adam.

        Returns
        -------
        loss : float
            Mean over the batch and the L bounds of :math:`-\log \frac1k \sum_i w_i`.
        parts : dict
            ``loss``; ``recon``, the mean NLL over the L k samples; ``kl``, the mean of
            :math:`\log q - \log p` over them (a Monte-Carlo KL): ``recon + beta * kl`` is
            minus the ELBO from the same draws, never below ``loss``.
        """
        kern, lik = model.kernels, model.likelihood
        zdim, rows = model.latent_dim, out.shape[0]
        buf = self._buffers(ws, rows, model.dtype)
        z, dout, nll, scale = dec_in[:, :zdim], ws["dout"], buf["nll"], buf["scale"]

        # the log weights: the per-row NLL (its unit-weight gradient comes with it), then
        # log p(z) - log q(z|x), the normalised weights and the bound, by log-sum-exp
        lik.nll_rows_and_grad(out, target, buf["ones"], dout, nll, kern)
        bound, nll_sum, ratio_sum = kern.iwae_weights(h, noise, z, nll, beta, self.k,
                                                      buf["ratio"], buf["wn"], scale)
        groups = rows // self.k  # L N bounds

        # decoder: row r's NLL gradient weighted by s_r (a learned variance sums over rows,
        # so the kernel runs again with the weights; otherwise the rows are rescaled)
        if lik.param_shapes(model.input_dim):
            lik.nll_rows_and_grad(out, target, scale, dout, nll, kern)
        else:
            dout *= scale[:, None]
        ddec_in = model.decoder.backward(dout, dec_in, ws["dec"], True, kern, defer)

        # the sample's gradient, then mu and logvar through the reparameterisation
        rho = self.rho(buf["wn"], beta, buf["rho"])
        kern.iwae_backward(h, noise, z, ddec_in[:, :zdim], scale, rho, beta, self.dreg,
                           ws["dh"])
        model.encoder.backward(ws["dh"], enc_in, ws["enc"], False, kern, defer)
        loss = -bound / groups
        return loss, {"loss": loss, "recon": nll_sum / rows, "kl": -ratio_sum / rows}


def check_objective(objective=None, k=None):
    """Validate an objective option; return ``(name, k)``.

    ``objective`` is ``"elbo"`` (or None), ``"iwae"`` or ``"iwae-dreg"``. ``k`` is the number
    of importance samples of the last two (default :data:`DEFAULT_K`); the ELBO has none
    (its sample count is the model's ``n_samples``), so ``k`` must then be None or 1.
    """
    name = "elbo" if objective is None else objective
    if not isinstance(name, str) or name.lower() not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(map(repr, OBJECTIVES))}, "
                         f"got {objective!r}")
    name = name.lower()
    if name == "elbo":
        if k is not None and chk.positive_int(k, "k") != 1:
            raise ValueError(
                f"k={k} is the sample count of the importance-weighted objectives; the ELBO "
                "uses n_samples (L) instead: pass objective='iwae' or drop k")
        return name, 1
    return name, DEFAULT_K if k is None else chk.positive_int(k, "k")


def _objective(objective, k):
    name, k = check_objective(objective, k)
    return None if name == "elbo" else ImportanceWeighted(k, dreg=name == "iwae-dreg")


_cached = functools.lru_cache(maxsize=64)(_objective)  # every step asks: 0.3 us, not 5


def get_objective(objective=None, k=None):
    """The :class:`ImportanceWeighted` objective named, or None for the ELBO (which
    :meth:`VAEModel.loss_and_grad` computes itself); see :func:`check_objective`. An
    :class:`ImportanceWeighted` instance (a subclass, say) is returned as it is."""
    if objective is None and k is None:
        return None
    if isinstance(objective, ImportanceWeighted):
        if k is not None and k != objective.k:
            raise ValueError(f"k={k} contradicts the objective's k={objective.k}")
        return objective
    if (objective is None or type(objective) is str) and (k is None or type(k) is int):
        return _cached(objective, k)
    return _objective(objective, k)
