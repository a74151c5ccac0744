"""Memory estimates: refuse a model or a request that cannot fit, before allocating it.

Every size here is computed with Python integers (no overflow), from the shapes alone, and
compared with :func:`memory_limit`: the memory the system reports as available
(``MemAvailable`` on Linux, the physical memory elsewhere), or ``NPVAE_MEMORY_LIMIT`` when
set (bytes, or a number with a K/M/G/T suffix). The estimates are of the arrays npvae
allocates itself, so they are lower bounds; they exist to turn ``--hidden 100000000`` into one
clear error instead of a ``MemoryError`` after minutes of swapping.
"""

from __future__ import annotations

import os

__all__ = ["MemoryBudgetError", "memory_limit", "check_memory", "format_bytes",
           "network_sizes", "parameter_count", "model_bytes", "training_bytes", "decode_bytes"]

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class MemoryBudgetError(ValueError):
    """A model or request needs more memory than the machine has available."""


def format_bytes(n):
    """``1536`` -> ``"1.5 KiB"``; exact for small numbers, three digits for large ones."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"  # unreachable; keeps linters quiet


def memory_limit():
    """Bytes a request may use: ``NPVAE_MEMORY_LIMIT`` if set, else the available memory
    (None when it cannot be told, which disables the checks)."""
    env = os.environ.get("NPVAE_MEMORY_LIMIT", "").strip().upper().removesuffix("B")
    if env:
        unit = env[-1] if env[-1] in _SUFFIX else ""
        try:
            value = float(env[:-1] if unit else env)
        except ValueError:
            raise ValueError(f"NPVAE_MEMORY_LIMIT={os.environ['NPVAE_MEMORY_LIMIT']!r} is not "
                             "a size; use bytes or a number with K, M, G or T (e.g. 8G)") from None
        return int(value * _SUFFIX[unit])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_memory(nbytes, what, fix):
    """Raise :class:`MemoryBudgetError` when ``nbytes`` exceeds :func:`memory_limit`.

    ``what`` names the request ("a model with hidden=(100000000,)"), ``fix`` says what to
    change ("use smaller hidden layers"). Returns ``nbytes``.
    """
    limit = memory_limit()
    if limit is not None and nbytes > limit:
        raise MemoryBudgetError(
            f"{what} needs about {format_bytes(nbytes)} of memory, more than the "
            f"{format_bytes(limit)} available; {fix} (or set NPVAE_MEMORY_LIMIT if you know "
            "better)")
    return nbytes


def network_sizes(input_dim, latent_dim, encoder_hidden, decoder_hidden, cond_dim=0):
    """Layer widths ``(encoder, decoder)`` of a VAE, as :class:`~npvae.core.model.VAEModel`
    builds them: ``[D + C, *encoder_hidden, 2Z]`` and ``[Z + C, *decoder_hidden, D]``."""
    d, z, c = int(input_dim), int(latent_dim), int(cond_dim)
    return [d + c, *map(int, encoder_hidden), 2 * z], [z + c, *map(int, decoder_hidden), d]


def parameter_count(input_dim, latent_dim, encoder_hidden, decoder_hidden, cond_dim=0):
    """Weights and biases of both networks plus an upper bound (D) for the likelihood's."""
    count = int(input_dim)
    for sizes in network_sizes(input_dim, latent_dim, encoder_hidden, decoder_hidden, cond_dim):
        count += sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return count


def _activations(sizes, rows):
    """Element count of one MLP workspace for ``rows`` rows (outputs + grads)."""
    return rows * (sum(sizes[1:]) + sum(sizes[:-1]))


def model_bytes(input_dim, latent_dim, encoder_hidden, decoder_hidden, cond_dim, itemsize):
    """Bytes of a built model: the parameter and gradient buffers."""
    return 2 * itemsize * parameter_count(input_dim, latent_dim, encoder_hidden,
                                          decoder_hidden, cond_dim)


def training_bytes(input_dim, latent_dim, encoder_hidden, decoder_hidden, cond_dim, itemsize,
                   batch_size, n_samples):
    """Bytes of a training run: parameters, gradients, the optimizer's two moments, the
    epoch's rollback copy and the best weights, plus one batch's workspace."""
    enc, dec = network_sizes(input_dim, latent_dim, encoder_hidden, decoder_hidden, cond_dim)
    n, rows = int(batch_size), int(batch_size) * int(n_samples)
    params = parameter_count(input_dim, latent_dim, encoder_hidden, decoder_hidden, cond_dim)
    work = (_activations(enc, n) + _activations(dec, rows) + rows * (2 * int(latent_dim)
                                                                    + int(cond_dim))
            + rows * int(input_dim) + n * int(input_dim + cond_dim))
    return itemsize * (6 * params + work)


def decode_bytes(rows, latent_dim, decoder_hidden, input_dim, cond_dim, itemsize, chunk=1024):
    """Bytes of decoding ``rows`` latents in chunks of ``chunk`` rows: the (rows, D) output,
    the (rows, Z) input and one chunk's workspace."""
    dec = [int(latent_dim) + int(cond_dim), *map(int, decoder_hidden), int(input_dim)]
    rows = int(rows)
    return itemsize * (rows * (int(input_dim) + int(latent_dim) + int(cond_dim))
                       + _activations(dec, min(rows, chunk)))
