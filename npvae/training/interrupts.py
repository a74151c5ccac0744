"""How a training run stops before its last epoch: SIGINT/SIGTERM turned into a stop
after the current step, a callback's ``stop_training``, the MPI ranks' agreement on both,
and divergence (the model rolled back, :class:`TrainingDiverged` raised)."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager, nullcontext


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or inf; the model was rolled back."""


class Interrupts:
    """The stopping half of :class:`~npvae.training.trainer.Trainer` (a base class of it):
    signals, a callback's stop request, and the rollback on divergence."""

    def _collective(self, signals=False):
        """Under MPI: abort all ranks on an exception raised on one (see DataParallel.guard);
        with ``signals``, the ranks agree on Ctrl-C / SIGTERM. Without MPI: nothing."""
        if self.dist is None:
            return nullcontext()
        return self.dist.guard(signals, agreed=(TrainingDiverged,))

    def _stop_requested(self):
        """A signal or a callback asked to stop; under MPI, what the ranks last agreed."""
        if self.dist is not None:
            return self.dist.stop_agreed
        return self._signal is not None or self.stop_training

    @property
    def stop_signal(self):
        """The signal number (SIGINT, SIGTERM) that interrupted the last ``fit``, or None."""
        return getattr(self, "_signal", None) if self.stop_reason == "interrupted" else None

    @contextmanager
    def _signal_guard(self):
        """Turn SIGINT/SIGTERM into a request to stop after the current step (main thread
        only; a second Ctrl-C raises KeyboardInterrupt); restore the old handlers after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._signal = signum

        sigs = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
        old = {s: signal.getsignal(s) for s in sigs}
        for s in sigs:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)

    def _diverge(self, snapshot, what, at_epoch_end=False):
        self.model.params.data[...] = snapshot[0]
        self.opt.load_state_dict(snapshot[1])
        self.finished = self.stop_reason = "diverged"
        saved = getattr(self, "_saved_at", None)
        if self.checkpoint_path is None:
            where = "no checkpoint was asked for (checkpoint_path=None)"
        elif saved is None or not os.path.exists(self.checkpoint_path):
            where = f"no checkpoint had been written yet to {self.checkpoint_path!r}"
        else:
            at = f"after epoch {saved[0]}" + (f", step {saved[1]} of epoch {saved[0] + 1}"
                                              if saved[1] else "")
            where = (f"the last good checkpoint {self.checkpoint_path!r} ({at}) is kept "
                     "unchanged")
        when = (f"at the end of epoch {self.epoch + 1} (after step {self.step})"
                if at_epoch_end else f"at epoch {self.epoch + 1}, step {self.step + 1}")
        raise TrainingDiverged(
            f"training diverged {when}: {what}. The "
            f"model was rolled back to the start of epoch {self.epoch + 1}; {where}. Lower "
            "lr, set clip_norm=..., or check the data scale")
