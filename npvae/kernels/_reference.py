r"""Plain-NumPy reference kernels: the specification, the fallback and the test oracle.

Every function here has a Numba twin of the same name and signature in
:mod:`npvae.kernels._numba`; the tests check that the two agree in float32 and float64.
These are written to be read: each one is the math of :doc:`docs/math.md <../docs/math>`
in vectorised NumPy. They allocate temporaries freely; the Numba versions do not.

Conventions shared by both backends:

* Outputs are written into arrays the caller passes (``out`` arguments, or in place);
  the return value, where there is one, is a Python float.
* ``h`` is the encoder's output ``(N, 2Z)``: columns ``[:Z]`` are ``mu``, ``[Z:]`` are
  ``logvar``.
* Decoder rows are sample-major: row ``r`` of an ``(L*N, .)`` array belongs to data point
  ``r % N``.
"""

from __future__ import annotations

import numpy as np

from npvae.kernels.activations import from_code

LOG_2PI = float(np.log(2 * np.pi))


def flush_limits(dtype):
    """``(tiny, cut)``: the smallest normal number of ``dtype`` and ``-log(tiny)``.

    Arithmetic that produces or consumes subnormal ("denormal") numbers runs tens of times
    slower on x86 CPUs. A trained decoder's logits for always-black pixels grow past
    ``cut`` (87 in float32), where ``exp(-|l|)`` would be subnormal; Adam's moments of a
    parameter whose gradient has become 0 decay through the subnormal range. The kernels
    therefore flush such values to 0, changing results by less than ``tiny``-sized amounts.
    """
    tiny = float(np.finfo(dtype).tiny)
    return tiny, -float(np.log(tiny))


# ----------------------------------------------------------------------------- dense layers
def matmul(a, b, out):
    """``out = a @ b`` through NumPy's BLAS, for 2-D ``a`` (M, K), ``b`` (K, N) and a
    C-contiguous ``out`` (M, N) of the same dtype; returns ``out``.

    ``np.dot`` rather than ``np.matmul``: matmul does not hand products with an inner
    dimension of 1 (a batch-1 weight gradient ``x.T @ dy``) to BLAS, and was about 7x
    slower on them.
    """
    return np.dot(a, b, out=out)


def bias_act(y, b, code, param):
    """In place: ``y <- f(y + b)``, the bias add and activation of a Dense layer.

    Parameters
    ----------
    y : ndarray (N, H)
        The GEMM output ``x @ W``; overwritten with the layer output.
    b : ndarray (H,)
    code, param : int, float
        The activation (see :mod:`npvae.core.activations`).
    """
    y += b
    y[...] = from_code(code, param).forward(y)


def bias_act_pre(y, b, code, param, pre):
    """:func:`bias_act` that also keeps the pre-activation: ``pre <- y + b`` (written),
    then ``y <- f(pre)``. For the activations whose derivative needs it (``needs_pre``)."""
    pre[...] = y + b
    y[...] = from_code(code, param).forward(pre)


def act_backward(dy, y, code, param, db):
    r"""In place: ``dy <- dy * f'(a)``, and ``db = sum_n dy``.

    ``f'(a)`` is computed from ``y``: the layer's output, or its pre-activation ``a`` for
    an activation that ``needs_pre`` (see :mod:`npvae.kernels.activations`). This is the
    activation backward fused with the bias gradient of the same layer:
    :math:`\partial L/\partial b_h = \sum_n \partial L/\partial a_{nh}`.
    """
    dy *= from_code(code, param).derivative(y)
    db[...] = dy.sum(axis=0)


# ------------------------------------------------------------ reparameterisation and KL
def gaussian_kl(mu, logvar):
    r"""KL(N(mu, e^logvar) || N(0, 1)) of each value:
    :math:`\tfrac12 (\mu^2 + e^{\ell} - 1 - \ell)` (docs/math.md section 5).

    Not a kernel: the one closed form that :func:`sample_kl`, the evaluation metrics
    (:mod:`npvae.inference.metrics`) and the benchmark's peer check use."""
    return 0.5 * (mu * mu + np.exp(logvar) - 1.0 - logvar)


def sample_kl(h, noise, z, kl_col):
    r"""Reparameterised sample and closed-form KL, forward.

    .. math::
        z_{ln} = \mu_n + e^{\ell_n / 2} \odot \epsilon_{ln}, \qquad
        \mathrm{kl}_j = \sum_n \tfrac12 (\mu_{nj}^2 + e^{\ell_{nj}} - 1 - \ell_{nj})

    Parameters
    ----------
    h : ndarray (N, 2Z)
        ``[mu | logvar]``.
    noise : ndarray (L*N, Z)
        Standard normal draws, sample-major.
    z : ndarray (L*N, Z), written
    kl_col : ndarray (Z,), written
        KL of each latent dimension, summed over the batch.
    """
    n, zdim = h.shape[0], h.shape[1] // 2
    mu, logvar = h[:, :zdim], h[:, zdim:]
    reps = noise.shape[0] // n
    std = np.exp(0.5 * logvar)
    z[...] = np.tile(mu, (reps, 1)) + np.tile(std, (reps, 1)) * noise
    kl_col[...] = gaussian_kl(mu, logvar).sum(axis=0)


def sample_kl_backward(h, noise, dz, w, dh):
    r"""Backward of :func:`sample_kl` for the loss ``sum(dz * z) + sum_j w_j kl_j``.

    .. math::
        \partial_{\mu_n} = \sum_l dz_{ln} + w \odot \mu_n, \qquad
        \partial_{\ell_n} = \sum_l dz_{ln} \odot \epsilon_{ln} \odot \tfrac12 e^{\ell_n/2}
            + w \odot \tfrac12 (e^{\ell_n} - 1)

    Parameters
    ----------
    h, noise : as in :func:`sample_kl`
    dz : ndarray (L*N, Z)
        Gradient of the loss with respect to ``z``.
    w : ndarray (Z,)
        Weight of each dimension's KL in the loss (``beta / N``, or 0 where free bits
        hold the dimension's KL constant).
    dh : ndarray (N, 2Z), written
    """
    n, zdim = h.shape[0], h.shape[1] // 2
    mu, logvar = h[:, :zdim], h[:, zdim:]
    reps = noise.shape[0] // n
    std = np.exp(0.5 * logvar)
    dz3 = dz.reshape(reps, n, zdim)
    noise3 = noise.reshape(reps, n, zdim)
    dh[:, :zdim] = dz3.sum(axis=0) + w * mu
    dh[:, zdim:] = (dz3 * noise3).sum(axis=0) * 0.5 * std + w * 0.5 * (np.exp(logvar) - 1.0)


# ------------------------------------------------- importance weights (IWAE and DReG)
def log_prior_ratio(eps, z, logvar, out=None):
    r"""Log density ratio :math:`\log p(z) - \log q(z | x)` of reparameterised samples, float64.

    For :math:`z = \mu + e^{\ell/2} \epsilon`, :math:`p = N(0, I)` and
    :math:`q = N(\mu, \mathrm{diag}\, e^{\ell})` the normalising constants cancel and
    :math:`(z - \mu)^2 / e^{\ell} = \epsilon^2`:

    .. math::
        \log \frac{p(z)}{q(z|x)} = \tfrac12 \sum_j \left(\epsilon_j^2 - z_j^2 + \ell_j\right)

    The one definition in npvae: :func:`iwae_weights` (training) and
    :func:`npvae.inference.metrics.iwae_log_likelihood` (evaluation) use it. Not a kernel.

    Parameters
    ----------
    eps, z : ndarray (..., N, Z)
        The noise and the samples it gave.
    logvar : ndarray (N, Z)
        :math:`\ell`, broadcast over the leading axes of ``eps``.
    out : ndarray (..., N) of float64, optional

    Returns
    -------
    ndarray (..., N) of float64
    """
    out = np.einsum("...j,...j->...", eps, eps, dtype=np.float64, out=out)
    out -= np.einsum("...j,...j->...", z, z, dtype=np.float64)
    out += logvar.sum(axis=-1, dtype=np.float64)
    out *= 0.5
    return out


def importance_weights(a, k):
    r"""The bound and the normalised weights of log weights ``a``, by log-sum-exp.

    ``a`` has shape (L k, N), sample ``s = l k + i`` of each column. With
    :math:`m_{ln} = \max_i a_{lin}`:

    .. math::
        b_{ln} = \log \frac1k \sum_i e^{a_{lin}} = m_{ln} + \log \sum_i e^{a_{lin} - m_{ln}}
        - \log k, \qquad
        \tilde w_{lin} = \frac{e^{a_{lin} - m_{ln}}}{\sum_{i'} e^{a_{li'n} - m_{ln}}}

    Every exponent is at most 0 and the largest term is 1, so nothing overflows, and the
    weights never underflow all together (log weights of -1e5 nats are fine). Not a kernel.

    Returns
    -------
    bound : ndarray (L, N)
    weights : ndarray (L k, N)
        Normalised over the k samples of each bound: they sum to 1 there.
    """
    g = a.reshape(-1, k, a.shape[-1])
    m = g.max(axis=1, keepdims=True)
    e = np.exp(g - m)
    total = e.sum(axis=1, keepdims=True)
    bound = (m + np.log(total))[:, 0] - np.log(k)
    return bound, (e / total).reshape(a.shape)


def iwae_weights(h, noise, z, nll, beta, k, ratio, wn, scale):
    r"""Log weights of the importance-weighted bound, their normalised weights, the bound.

    For row ``r`` (sample ``s = l k + i`` of data point ``n = r % N``, ``R = L k N`` rows):

    .. math::
        \Delta_r = \log\frac{p(z_r)}{q(z_r|x_n)}, \qquad
        a_r = \beta \Delta_r - \mathrm{nll}_r, \qquad
        \tilde w_r = \mathrm{softmax}_i(a_{l\cdot n})_i, \qquad
        s_r = \frac{\tilde w_r}{L N}

    by :func:`log_prior_ratio` and :func:`importance_weights`, in float64.

    Parameters
    ----------
    h : ndarray (N, 2Z)
        ``[mu | logvar]``.
    noise, z : ndarray (R, Z)
        The noise and the samples (``z`` may be a strided view).
    nll : ndarray (R,) of float64
        :math:`-\log p(x_n | z_r)`.
    beta : float
    k : int
        Importance samples per bound.
    ratio, wn : ndarray (R,) of float64, written
        :math:`\log p(z_r) - \log q(z_r|x)` and the normalised weights.
    scale : ndarray (R,), written
        :math:`s_r`, in the dtype of ``h``: the weight of row r's gradient in the loss.

    Returns
    -------
    (float, float, float)
        The sum over the L N bounds of :math:`\log \frac1k \sum_i e^{a}`, the sum of
        ``nll`` and the sum of ``ratio``.
    """
    n, zdim = h.shape[0], h.shape[1] // 2
    rows = noise.shape[0]
    s = rows // n
    ratio[...] = log_prior_ratio(noise.reshape(s, n, zdim), z.reshape(s, n, zdim),
                                 h[:, zdim:]).reshape(-1)
    bound, w = importance_weights((beta * ratio - nll).reshape(s, n), k)
    wn[...] = w.reshape(-1)
    scale[...] = wn / (rows // k)
    return float(bound.sum()), float(nll.sum()), float(ratio.sum())


def iwae_backward(h, noise, z, dz, scale, rho, beta, stop_q, dh):
    r"""Backward of the importance-weighted loss from the sample to the encoder output.

    With :math:`\delta z_r` the decoder's gradient of row r (its NLL weighted by
    :math:`s_r`) and :math:`\sigma_n = e^{\ell_n/2}`:

    .. math::
        g_r = \rho_r \left(\delta z_r + \beta s_r (z_r - [\mathrm{stop}]\,
            \epsilon_r / \sigma_n)\right), \qquad
        \partial\mu_n = \sum_{r \in n} g_r, \qquad
        \partial\ell_n = \tfrac12 \sigma_n \sum_{r \in n} g_r \epsilon_r
            - [\text{not stop}]\,\tfrac\beta2 \sum_{r \in n} \rho_r s_r

    IWAE: :math:`\rho = 1`, q not stopped (the last term is :math:`-\beta/(2N)`); DReG:
    :math:`\rho_r = 1 - \beta + \beta \tilde w_r` and q's parameters stopped
    (docs/math.md, "Importance-weighted objectives").

    Parameters
    ----------
    h, noise, z : as in :func:`iwae_weights`
    dz : ndarray (R, Z)
        :math:`\delta z`, read only (may be a strided view).
    scale, rho : ndarray (R,)
    beta : float
    stop_q : bool
    dh : ndarray (N, 2Z), written
    """
    n, zdim = h.shape[0], h.shape[1] // 2
    s = noise.shape[0] // n
    std = np.tile(np.exp(0.5 * h[:, zdim:]), (s, 1))
    t = z - noise / std if stop_q else z
    g = rho[:, None] * (dz + beta * scale[:, None] * t)
    sample_kl_backward(h, noise, g, np.zeros(zdim, h.dtype), dh)
    if not stop_q:
        dh[:, zdim:] -= 0.5 * beta * (rho * scale).reshape(s, n).sum(axis=0)[:, None]


# --------------------------------------------------------------------------- likelihoods
def bernoulli_nll(logits, x, scale, dlogits):
    r"""Bernoulli negative log-likelihood from logits, and its scaled gradient.

    .. math::
        -\log p(x | l) = \mathrm{softplus}(l) - x l
                       = \max(l, 0) - x l + \log(1 + e^{-|l|}), \qquad
        \partial_l = \sigma(l) - x

    The max/log1p form never overflows and never takes log(sigmoid). Where
    :math:`|l|` exceeds ``-log(tiny)`` (87 in float32), :math:`e^{-|l|}` is taken as 0
    rather than a subnormal number (see :func:`flush_limits`).

    Parameters
    ----------
    logits : ndarray (L*N, D)
    x : ndarray (N, D)
        Targets in [0, 1].
    scale : float
        ``dlogits = scale * (sigmoid(logits) - x)`` (``1/(L N)`` for the mean loss).
    dlogits : ndarray (L*N, D), written

    Returns
    -------
    float
        The NLL summed over every row and pixel.
    """
    xt = np.tile(x, (logits.shape[0] // x.shape[0], 1))
    _, cut = flush_limits(logits.dtype)
    a = np.abs(logits)
    t = np.where(a < cut, np.exp(-np.minimum(a, cut)), 0)  # e^{-|l|}, never subnormal
    nll = np.maximum(logits, 0) - xt * logits + np.log1p(t)
    sig = np.where(logits >= 0, 1 / (1 + t), t / (1 + t))  # sigma(l) from the same t
    dlogits[...] = scale * (sig - xt)
    return float(nll.sum(dtype=np.float64))


def sigmoid(logits, out):
    r"""The Bernoulli mean :math:`\sigma(l) = 1 / (1 + e^{-l})`, written into ``out``.

    Computed from :math:`t = e^{-|l|}` as :math:`1/(1+t)` for :math:`l \ge 0` and
    :math:`t/(1+t)` otherwise, so ``exp`` never overflows; :math:`t` is 0 past the cut of
    :func:`flush_limits`, which gives exact 0 and 1 there instead of subnormal numbers.
    """
    _, cut = flush_limits(logits.dtype)
    a = np.abs(logits)
    t = np.where(a < cut, np.exp(-np.minimum(a, cut)), 0)
    out[...] = np.where(logits >= 0, 1 / (1 + t), t / (1 + t))
    return out


def gaussian_nll(mean, x, logvar, scale, dmean, dlogvar):
    r"""Gaussian negative log-likelihood with log-variance ``logvar``, and its gradients.

    .. math::
        -\log p(x | m) = \tfrac12 \left(\log 2\pi + v + (x - m)^2 e^{-v}\right), \quad
        \partial_m = (m - x) e^{-v}, \quad
        \partial_v = \tfrac12 \left(1 - (x - m)^2 e^{-v}\right)

    Parameters
    ----------
    mean : ndarray (L*N, D)
    x : ndarray (N, D)
    logvar : ndarray (D,) or (1,)
        Per-dimension, or one value shared by every dimension.
    scale : float
        Multiplies both gradients.
    dmean : ndarray (L*N, D), written
    dlogvar : ndarray, same shape as ``logvar``, written
        Summed over rows (and over dimensions when ``logvar`` has one value).

    Returns
    -------
    float
        The NLL summed over every row and dimension.
    """
    xt = np.tile(x, (mean.shape[0] // x.shape[0], 1))
    r2 = (xt - mean) ** 2 * np.exp(-logvar)
    nll = 0.5 * (LOG_2PI + logvar + r2)
    dmean[...] = scale * (mean - xt) * np.exp(-logvar)
    dv = scale * 0.5 * (1.0 - r2)
    dlogvar[...] = dv.sum(axis=0) if logvar.shape[0] == mean.shape[1] else dv.sum()
    return float(nll.sum(dtype=np.float64))


def bernoulli_nll_rows(logits, x, row_scale, dlogits, nll):
    r"""Per-row Bernoulli NLL from logits, and each row's gradient scaled by its own weight.

    The same terms as :func:`bernoulli_nll`, kept per row: for row ``r`` (data point
    ``r % N``)

    .. math::
        \mathrm{nll}_r = \sum_d \max(l_{rd}, 0) - x_d l_{rd} + \log(1 + e^{-|l_{rd}|}),
        \qquad \mathrm{dlogits}_r = s_r\,(\sigma(l_r) - x)

    Objectives that weight samples unequally (IWAE's normalised importance weights, M2's
    class probabilities) and samplers, which need log p(x | z) of every chain, use it.

    Parameters
    ----------
    logits : ndarray (R, D)
    x : ndarray (N, D), with R a multiple of N
    row_scale : ndarray (R,)
        ``s_r``, the weight of row r's gradient.
    dlogits : ndarray (R, D), written
    nll : ndarray (R,) of float64, written
    """
    xt = np.tile(x, (logits.shape[0] // x.shape[0], 1))
    _, cut = flush_limits(logits.dtype)
    a = np.abs(logits)
    t = np.where(a < cut, np.exp(-np.minimum(a, cut)), 0)
    e = np.maximum(logits, 0) - xt * logits + np.log1p(t)
    sig = np.where(logits >= 0, 1 / (1 + t), t / (1 + t))
    dlogits[...] = row_scale[:, None] * (sig - xt)
    nll[...] = e.sum(axis=1, dtype=np.float64)


def gaussian_nll_rows(mean, x, logvar, row_scale, dmean, dlogvar, nll):
    r"""Per-row Gaussian NLL, and each row's gradients scaled by its own weight.

    The terms of :func:`gaussian_nll` kept per row ``r`` (data point ``r % N``):
    :math:`\mathrm{nll}_r = \sum_d \tfrac12 (\log 2\pi + v_d + (x_d - m_{rd})^2 e^{-v_d})`,
    ``dmean_r = s_r (m_r - x) e^{-v}``, and ``dlogvar`` the sum over rows of
    :math:`s_r \tfrac12 (1 - (x - m_r)^2 e^{-v})` (over dimensions too when ``logvar`` has
    one value).
    """
    xt = np.tile(x, (mean.shape[0] // x.shape[0], 1))
    r2 = (xt - mean) ** 2 * np.exp(-logvar)
    s = row_scale[:, None]
    dmean[...] = s * (mean - xt) * np.exp(-logvar)
    dv = s * 0.5 * (1.0 - r2)
    dlogvar[...] = dv.sum(axis=0) if logvar.shape[0] == mean.shape[1] else dv.sum()
    nll[...] = (0.5 * (LOG_2PI + logvar + r2)).sum(axis=1, dtype=np.float64)


# ----------------------------------------------------------------------------- optimizers
def adam_step(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, gscale):
    r"""One Adam step in PyTorch's form, in place, over flat buffers.

    .. math::
        g &\leftarrow s\,g \quad (s = \text{gscale}, \text{ from gradient clipping}) \\
        p &\leftarrow p (1 - \eta \lambda) \quad (\text{decoupled weight decay, AdamW}) \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        p &\leftarrow p - \eta \, \frac{m / b_1}{\sqrt{v / b_2} + \epsilon}, \quad
        b_1 = 1 - \beta_1^t, \; b_2 = 1 - \beta_2^t

    Subnormal numbers are flushed (see :func:`flush_limits`): gradient entries too small
    for :math:`(1 - \beta_2) g^2` to be a normal number count as 0, and ``m``, ``v`` entries
    below ``tiny`` are stored as 0. Such entries move a parameter by less than
    :math:`\eta\,10^{-10}`.
    """
    tiny, _ = flush_limits(p.dtype)
    gs = gscale * g
    gs = np.where(np.abs(gs) >= np.sqrt(tiny / (1.0 - beta2)) if beta2 < 1 else tiny, gs, 0)
    if weight_decay:
        p *= 1.0 - lr * weight_decay
    m *= beta1
    m += (1.0 - beta1) * gs
    v *= beta2
    v += (1.0 - beta2) * gs * gs
    m[np.abs(m) < tiny] = 0
    v[v < tiny] = 0
    p -= lr * (m / bc1) / (np.sqrt(v / bc2) + eps)


def adam_step_outer(w, x, delta, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay):
    r"""Adam step for a weight matrix whose gradient is the product :math:`x^\top \delta`.

    The same update as :func:`adam_step` with ``g = x.T @ delta`` (shapes: ``w, m, v``
    (in, out); ``x`` (N, in); ``delta`` (N, out)), but the gradient is never stored: for a
    small batch, forming it costs more memory traffic than the update itself.
    """
    adam_step(w.reshape(-1), (x.T @ delta).reshape(-1), m.reshape(-1), v.reshape(-1), lr,
              beta1, beta2, eps, bc1, bc2, weight_decay, 1.0)


def sgd_step(p, g, buf, lr, momentum, weight_decay, nesterov, first, gscale):
    r"""One SGD step with (optionally Nesterov) momentum, PyTorch's form, in place.

    .. math::
        d = s\,g + \lambda p, \quad
        b \leftarrow d \text{ (first step) else } \mu b + d, \quad
        p \leftarrow p - \eta\,(d + \mu b \text{ if Nesterov else } b)
    """
    d = gscale * g + weight_decay * p
    if momentum:
        if first:
            buf[...] = d
        else:
            buf *= momentum
            buf += d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def sum_squares(g):
    """Return ``sum(g**2)`` as a Python float, accumulated in float64."""
    return float(np.dot(g.astype(np.float64), g.astype(np.float64)))


# ------------------------------------------------------------------- samplers over z
# Rows are chain-major, r = k * N + n: a per-point array of M rows (M = N, or 1 for one
# value shared by every row) is read at row r % M; R is a multiple of N.
def _rows(a, r):
    return np.tile(a, (r // a.shape[0],) + (1,) * (a.ndim - 1))


def normal_log_density(z, mu, inv_var, const, out, grad):
    r"""Diagonal-Gaussian log-density of every row, and its gradient in z.

    .. math::
        \mathrm{out}_r = c_r - \tfrac12 \sum_j (z_{rj} - \mu_{rj})^2 \lambda_{rj}, \qquad
        \mathrm{grad}_r = -(z_r - \mu_r) \odot \lambda_r

    with :math:`\mu, \lambda, c` read at row ``r % M``. The prior N(0, I) is
    ``mu = 0``, ``inv_var = 1`` (shape (1, Z)), ``const = -Z/2 log 2 pi``; HMC's kinetic
    energy :math:`-\tfrac12 |v|^2` is the same with ``const = 0``.

    Parameters
    ----------
    z : ndarray (R, Z)
    mu, inv_var : ndarray (M, Z), same dtype as z
    const : ndarray (M,) of float64, the same M
    out : ndarray (R,) of float64, written
    grad : ndarray (R, Z), written
    """
    r = z.shape[0]
    d = z - _rows(mu, r)
    iv = _rows(inv_var, r)
    grad[...] = -d * iv
    out[...] = _rows(const, r) - 0.5 * (d.astype(np.float64) ** 2 * iv).sum(axis=1)


def leapfrog_kick(v, g_lb, g_lr, beta, step):
    r"""In place: :math:`v \leftarrow v + e_r \odot (\nabla \mathrm{lb} + \beta \nabla
    \mathrm{lr})`, the momentum half of a leapfrog step.

    Parameters
    ----------
    v, g_lb, g_lr : ndarray (R, Z)
    beta : float
    step : ndarray (N, Z), read at row r % N
        Each point's step per latent dimension: the step size times the scale of the
        dimension, :math:`\epsilon_n s_{nj}` (unit mass in the coordinates z / s).
    """
    v += _rows(step, v.shape[0]) * (g_lb + v.dtype.type(beta) * g_lr)


def leapfrog_drift(z, v, step):
    r"""In place: :math:`z \leftarrow z + e_r \odot v`, the position step of leapfrog (and,
    with v standard normal, a random-walk proposal); ``step`` as in :func:`leapfrog_kick`."""
    z += _rows(step, z.shape[0]) * v


def leapfrog_kick_drift(z, v, g_lb, g_lr, beta, kick, drift):
    """:func:`leapfrog_kick` with steps ``kick``, then :func:`leapfrog_drift` with steps
    ``drift``, in one pass: the middle of a leapfrog trajectory (and, with ``kick`` half
    of ``drift``, its start)."""
    leapfrog_kick(v, g_lb, g_lr, beta, kick)
    leapfrog_drift(z, v, drift)


def select_rows(dst, src, mask):
    """In place: ``dst[r] = src[r]`` where ``mask[r]``, for 2-D ``dst``, ``src`` (R, C) and
    a boolean ``mask`` (R,). A select, never a blend: rows not taken are untouched, whatever
    ``src`` holds there (NaN, inf)."""
    np.copyto(dst, src, where=mask[:, None])
