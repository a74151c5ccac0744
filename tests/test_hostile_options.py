"""Options and keyword arguments: requests too large for memory are refused with the number
and the fix before anything is allocated; wrong types are refused naming the argument."""

import numpy as np
import pytest

from npvae.cli import main
from npvae.core.memory import MemoryBudgetError, format_bytes, memory_limit
from npvae.core.optim import SGD, Adam
from npvae.inference import metrics
from npvae.training.estimator import VAE
from tests import hostile as h
from tests.test_cli import TINY

MiB = 1 << 20
X = (np.random.default_rng(0).random((32, 6)) > 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("opt") / "run"
    assert main(["train", *TINY, "--epochs", "1", "--no-figures", "--out", str(out)]) == 0
    return str(out)


def refused_cli(argv, capsys, *words):
    with h.peak_memory(64 * MiB):
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(line) == 1, err
    for w in ("needs about", "available", *words):
        assert w in line[0], (w, line[0])


@pytest.mark.parametrize(
    "option, value, word",
    [
        ("--hidden", "100000000", "smaller hidden"),
        ("--hidden", "512,100000000", "hidden"),
        ("--latent-dim", "2147483648", "latent_dim"),
        ("--samples", "100000000", "fewer samples"),
        ("--batch-size", "100000000", None),
    ],
)
def test_train_options_too_large_for_memory(tmp_path, capsys, option, value, word):
    if option == "--batch-size":
        value = "100000000"  # clipped to the rows: fits
        assert (
            main(["train", *TINY, "--no-figures", "--out", str(tmp_path / "ok"), option, value])
            == 0
        )
        capsys.readouterr()
        return
    refused_cli(["train", *TINY, option, value, "--out", str(tmp_path / "r")], capsys, word)
    assert not (tmp_path / "r").exists()  # refused before the run folder was made


def test_sample_and_eval_too_large_for_memory(run, capsys, tmp_path):
    refused_cli(
        ["sample", run, "-n", "1000000000", "--out", str(tmp_path / "s.png")],
        capsys,
        "n=1000000000",
        "fewer",
    )
    refused_cli(["eval", run, "-k", "1000000000"], capsys, "k=1000000000")


def test_python_requests_too_large_for_memory():
    with h.peak_memory(16 * MiB):
        for make in (
            lambda: VAE(input_dim=1024, hidden=100_000_000).params,
            lambda: VAE(input_dim=10, latent_dim=2147483648, hidden=()).params,
            lambda: VAE(latent_dim=2, hidden=(4,), n_samples=100_000_000).fit(
                X, batch_size=32, progress=False
            ),
        ):
            with pytest.raises(MemoryBudgetError, match="needs about .* available"):
                make()
        m = VAE(input_dim=6, latent_dim=2, hidden=(4,))
        with pytest.raises(MemoryBudgetError, match="n=1000000000"):
            m.sample(1_000_000_000)
        with pytest.raises(MemoryBudgetError, match="k=1000000000"):
            m.log_likelihood(X, k=1_000_000_000)
    assert issubclass(MemoryBudgetError, ValueError)


def test_memory_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("NPVAE_MEMORY_LIMIT", "1M")
    assert memory_limit() == MiB
    with pytest.raises(MemoryBudgetError, match=r"needs about 3\.2[0-9]* MiB.*1 MiB available"):
        VAE(input_dim=1024, hidden=(200,)).build(1024)  # 2 x 4 x ~424k parameters
    assert VAE(input_dim=64, hidden=(16,)).params is not None  # a small one still builds
    monkeypatch.setenv("NPVAE_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="NPVAE_MEMORY_LIMIT"):
        memory_limit()
    monkeypatch.delenv("NPVAE_MEMORY_LIMIT")
    assert memory_limit() > 10 * MiB
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(3) == "3 B"


# ----------------------------------------------------------------------------- keyword arguments
def fit(**kw):
    return VAE(latent_dim=2, hidden=(4,)).fit(X, **{"epochs": 1, "progress": False, **kw})


def built():
    return VAE(input_dim=6, latent_dim=2, hidden=(4,))


BAD_KWARGS = [
    (lambda: VAE(hidden=3.5).build(6), "hidden"),
    (lambda: VAE(hidden="512").build(6), "hidden"),
    (lambda: VAE(hidden=(4, 2.5)).build(6), "hidden"),
    (lambda: VAE(encoder_hidden={4}).build(6), "encoder_hidden"),
    (lambda: VAE(latent_dim=True).build(6), "latent_dim"),
    (lambda: VAE(latent_dim="2").build(6), "latent_dim"),
    (lambda: VAE(beta="1").build(6), "beta"),
    (lambda: VAE(beta=None).build(6), "beta"),
    (lambda: VAE(dtype=None).build(6), "dtype"),
    (lambda: VAE(dtype="int8").build(6), "dtype"),
    (lambda: VAE(n_samples=None).build(6), "n_samples"),
    (lambda: VAE(free_bits="0").build(6), "free_bits"),
    (lambda: VAE(seed=1.5).build(6), "seed"),
    (lambda: VAE(seed="1").build(6), "seed"),
    (lambda: VAE(init=None).build(6), "init"),
    (lambda: VAE(cond_dim=1.0).build(6), "cond_dim"),
    (lambda: VAE(input_dim="6").params, "input_dim"),
    (lambda: fit(lr="1e-3"), "lr"),
    (lambda: fit(lr=True), "lr"),
    (lambda: fit(clip_norm=True), "clip_norm"),
    (lambda: fit(progress="no"), "progress"),
    (lambda: fit(progress=None), "progress"),
    (lambda: fit(callbacks="abc"), "callbacks"),
    (lambda: fit(callbacks=[1]), "callbacks"),
    (lambda: fit(callbacks=print), "callbacks"),
    (lambda: fit(resume="yes", checkpoint_path="x.npz"), "resume"),
    (lambda: fit(warm_start=1), "warm_start"),
    (lambda: fit(epochs=2.0), "epochs"),
    (lambda: fit(batch_size="64"), "batch_size"),
    (lambda: fit(threads=0.5), "threads"),
    (lambda: fit(weight_decay=None), "weight_decay"),
    (lambda: fit(kl_warmup_epochs="1"), "kl_warmup_epochs"),
    (lambda: fit(checkpoint_every=True), "checkpoint_every"),
    (lambda: fit(checkpoint_path=5), "checkpoint_path"),
    (lambda: fit(seed="0"), "seed"),
    (lambda: fit(free_bits="1"), "free_bits"),
    (lambda: fit(optimizer=None), "optimizer"),
    (lambda: fit(lr_schedule=3), "lr_schedule"),
    (lambda: fit(binarize=True), "binarize"),
    (lambda: fit(lr_schedule=print), "lr_schedule"),  # found by the fuzz tests
    (lambda: fit(lr_schedule=lambda s, t: float("nan")), "lr_schedule"),
    (lambda: fit(corruption="mask", corruption_level="0.3"), "corruption_level"),
    (lambda: fit(early_stopping_patience=2.5, validation_data=(X,)), "early_stopping_patience"),
    (lambda: built().sample(2.0), "n"),
    (lambda: built().sample(3, mean="no"), "mean"),
    (lambda: built().sample(3, rng="x"), "rng"),
    (lambda: built().sample(3, rng=-1), "rng"),
    (lambda: built().elbo(X, n_samples=0), "n_samples"),
    (lambda: built().elbo(X, n_samples=1.5), "n_samples"),
    (lambda: built().log_likelihood(X, k=1.5), "k"),
    (lambda: built().log_likelihood(X, batch_size=None), "batch_size"),
    (lambda: Adam(built().params, lr="1e-3"), "lr"),
    (lambda: Adam(built().params, betas=("0.9", 0.99)), "betas[0]"),
    (lambda: Adam(built().params, betas=0.9), "betas"),
    (lambda: Adam(built().params, eps="1e-8"), "eps"),
    (lambda: SGD(built().params, momentum="0.9"), "momentum"),
    (lambda: SGD(built().params, momentum=0.9, nesterov="no"), "nesterov"),
]


@pytest.mark.parametrize(
    "call, name", BAD_KWARGS, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD_KWARGS)]
)
def test_wrong_keyword_arguments_name_the_argument(call, name):
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(name) or f" {name} " in msg or f"{name} must" in msg, msg
    assert "object is not iterable" not in msg and "could not convert" not in msg


def test_hidden_float_message():
    with pytest.raises(
        TypeError,
        match=r"hidden must be a sequence of layer widths .* "
        r"got 3\.5 \(float\)",
    ):
        VAE(hidden=3.5).build(6)  # the constructor stores; building validates


# ----------------------------------------------------------------------------- elbo's memory
def test_elbo_is_chunked_over_samples(monkeypatch):
    m = VAE(input_dim=16, latent_dim=3, hidden=(8,), dtype="float64")
    x = (np.random.default_rng(0).random((50, 16)) > 0.5).astype(np.float64)
    monkeypatch.setattr(metrics, "_MAX_ELEMENTS", 1 << 30)  # one chunk: the old way
    ref = m.elbo(x, n_samples=400, rng=5)
    monkeypatch.setattr(metrics, "_MAX_ELEMENTS", 5 * 50 * 16)  # chunks of 5 samples
    with h.peak_memory(MiB):  # 400 x 50 x 16 float64 at once would be 2.6 MB, several times
        got = m.elbo(x, n_samples=400, rng=5)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    # the default chunk holds about 4M outputs whatever n_samples is
    monkeypatch.undo()
    with h.peak_memory(400 * MiB):
        m.elbo(x[:2], n_samples=300_000, rng=1)  # 300k x 2 x 16 = 9.6M outputs
