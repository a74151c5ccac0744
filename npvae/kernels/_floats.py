"""What the kernels of both backends share about floating point: ``LOG_2PI`` and
the subnormal limits (:func:`flush_limits`) below which values are flushed to 0."""

from __future__ import annotations

import numpy as np

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
