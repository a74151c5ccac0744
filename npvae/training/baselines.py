"""Supervised baselines for semi-supervised runs: the classifier network trained on the labels
alone, and multinomial logistic regression (for M1 + a linear classifier on a VAE's latent
means). Both are :class:`~npvae.core.classifier.ClassifierModel`, whose gradient is checked.
No scikit-learn: Adam for the network, ``scipy.optimize`` L-BFGS for the regression.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from npvae.core import checks as chk
from npvae.core.classifier import ClassifierModel, check_labels
from npvae.core.optim import Adam

__all__ = ["fit_classifier", "SoftmaxRegression"]


def fit_classifier(X, y, n_classes, *, hidden=(256,), activation="relu",
                   validation_data=None, epochs=300, batch_size=100, lr=1e-3, weight_decay=0.0,
                   seed=0, dtype="float32", backend=None):
    """Train a :class:`ClassifierModel` on labelled rows by Adam on the mean cross-entropy.

    Rows with ``y == -1`` are dropped, so the semi-supervised ``(X, y)`` can be passed as is.
    With ``validation_data=(X_val, y_val)`` the model keeps the weights of the epoch with the
    best validation accuracy (``best_epoch_``), the rule :class:`SemiSupervisedVAE` follows.

    Returns
    -------
    ClassifierModel
        With ``history_`` (per epoch: ``epoch``, ``loss``, ``val_accuracy``) and
        ``best_epoch_``.
    """
    X = chk.as_data(X, dtype, "X")
    y = check_labels(y, len(X), n_classes, "y")
    X, y = X[y >= 0], y[y >= 0]
    if len(X) == 0:
        raise ValueError("y has no labelled rows (all -1); nothing to train on")
    model = ClassifierModel(X.shape[1], n_classes, hidden, activation=activation, dtype=dtype,
                            seed=seed, backend=backend)
    opt = Adam(model.params, lr=lr, weight_decay=weight_decay, backend=backend)
    rng = np.random.default_rng([seed, 0xC1A5])
    bs = min(chk.positive_int(batch_size, "batch_size"), len(X))
    best, best_params = -1.0, None
    model.history_, model.best_epoch_ = [], None
    for e in range(chk.positive_int(epochs, "epochs")):
        perm, total = rng.permutation(len(X)), 0.0
        for start in range(0, len(X), bs):
            idx = perm[start:start + bs]
            loss, _ = model.loss_and_grad(X[idx], y[idx])
            opt.step()
            total += loss * len(idx) / len(X)
        rec = {"epoch": e + 1, "loss": total, "val_accuracy": None}
        if validation_data is not None:
            rec["val_accuracy"] = model.score(*validation_data)
            if rec["val_accuracy"] > best:
                best, best_params, model.best_epoch_ = (rec["val_accuracy"],
                                                        model.params.data.copy(), e + 1)
        model.history_.append(rec)
    if best_params is not None:
        model.params.data[...] = best_params
    return model


class SoftmaxRegression:
    r"""Multinomial logistic regression with an L2 penalty, fitted by L-BFGS.

    Minimises :math:`\frac1N\sum_n -\log\mathrm{softmax}(x_n W + b)_{y_n} +
    \tfrac{\lambda}{2}\lVert W\rVert^2` on standardised features (each column centred and
    scaled by the mean and standard deviation of the training rows); the loss and its
    gradient are :class:`~npvae.core.classifier.ClassifierModel`'s with no hidden layer.

    Parameters
    ----------
    l2 : float or sequence of float, default (1e-4, 1e-3, 1e-2, 1e-1, 1)
        :math:`\lambda`. Several values: each is fitted and the one with the best
        accuracy on ``validation_data`` is kept (the first one without it).
    max_iter : int, default 500
    tol : float, default 1e-9
        L-BFGS stops when the largest gradient entry falls below this (and on a relative
        loss change below ``tol * 1e-3``).
    """

    def __init__(self, l2=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), max_iter=500, tol=1e-9):
        self.l2 = l2
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y, n_classes=None, *, validation_data=None):
        """Fit on the labelled rows of ``(X, y)`` (``y == -1`` rows are dropped)."""
        X = chk.as_data(X, np.float64, "X")
        y = np.asarray(y)
        k = int(np.max(y)) + 1 if n_classes is None else int(n_classes)
        y = check_labels(y, len(X), k, "y")
        X, y = X[y >= 0], y[y >= 0]
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        xs = (X - self.mean_) / self.scale_
        grid = np.atleast_1d(np.asarray(self.l2, dtype=np.float64))
        best = None
        for l2 in grid:
            model = ClassifierModel(X.shape[1], k, (), l2=float(l2), dtype="float64")
            model.params.data[...] = 0

            def f(p, model=model):
                model.params.data[...] = p
                loss, _ = model.loss_and_grad(xs, y)
                return loss, model.params.grad.copy()

            res = minimize(f, model.params.data.copy(), jac=True, method="L-BFGS-B",
                           options={"maxiter": int(self.max_iter), "gtol": self.tol,
                                    "ftol": self.tol * 1e-3})
            model.params.data[...] = res.x
            self.model_ = model
            acc = 0.0 if validation_data is None else self.score(*validation_data)
            if best is None or acc > best[0]:
                best = (acc, float(l2), model)
            if validation_data is None:
                break
        self.val_accuracy_, self.l2_, self.model_ = best
        return self

    def predict_proba(self, X):
        X = chk.as_data(X, np.float64, "X", dim=len(self.mean_))
        return self.model_.predict_proba((X - self.mean_) / self.scale_)

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)

    def score(self, X, y):
        y = check_labels(y, np.shape(X)[0], self.model_.n_classes, unlabelled=False)
        return float(np.mean(self.predict(X) == y))
