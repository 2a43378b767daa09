"""The numpy polyphase any-rate resampler chorus used for playback before soxr, kept as the benchmark's baseline.

benchmarks/resample_bench.py measures it against soxr (docs/resample-bench.json); chorus itself no longer uses it.
"""

from __future__ import annotations

from math import gcd

import numpy as np

from audio.resample import design_lowpass


class NumpyStreamResampler:
    """Rational polyphase resampler ``in_rate -> out_rate`` for float32 audio shaped (n,) or (n, channels).

    Output sample n sits at input position n*M/L (L/M = out/in reduced); it is the dot product of the
    ``taps_per_phase`` preceding input samples with the filter phase ``(n*M) mod L``.
    """

    def __init__(self, in_rate: int, out_rate: int, *, taps_per_phase: int = 24) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("sample rates must be positive")
        g = gcd(in_rate, out_rate)
        self.in_rate, self.out_rate = in_rate, out_rate
        self.up, self.down = out_rate // g, in_rate // g
        self.passthrough = self.up == self.down
        k = taps_per_phase
        self._k = k
        if not self.passthrough:
            # prototype at in_rate*L; cutoff just below the lower Nyquist, gain L to undo zero-stuffing
            cutoff = 0.5 * min(in_rate, out_rate) * 0.92 / (in_rate * self.up)
            h = design_lowpass(self.up * k, cutoff, beta=8.0, gain=float(self.up))
            # phases[p, j] multiplies x[base - j]
            self._phases = h.reshape(k, self.up).T.astype(np.float32).copy()
        self._hist: np.ndarray | None = None  # last k-1 input samples (n, ch) before the current chunk
        self._n_out = 0  # outputs produced so far (relative to the input origin below)
        self._in_seen = 0  # inputs consumed so far

    def reset(self) -> None:
        self._hist = None
        self._n_out = 0
        self._in_seen = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        """Convert one chunk; returns every output sample whose input support has arrived."""
        x = np.asarray(x, dtype=np.float32)
        if self.passthrough or x.shape[0] == 0:
            return x.copy() if self.passthrough else x[:0]
        squeeze = x.ndim == 1
        x2 = x[:, None] if squeeze else x
        k = self._k
        if self._hist is None or self._hist.shape[1] != x2.shape[1]:
            self._hist = np.zeros((k - 1, x2.shape[1]), dtype=np.float32)
        buf = np.concatenate((self._hist, x2))  # buf[i] is input index (self._in_seen - (k-1) + i)
        start = self._in_seen - (k - 1)
        end_in = self._in_seen + x2.shape[0]  # inputs 0..end_in-1 are known
        # outputs n with base = floor(n*M/L) <= end_in - 1
        n_last = (end_in * self.up - 1) // self.down  # largest n with n*M < end_in*L
        n = np.arange(self._n_out, n_last + 1, dtype=np.int64)
        if n.size:
            pos = n * self.down
            base = pos // self.up
            phase = pos % self.up
            idx = (base - start)[:, None] - np.arange(k)[None, :]  # (n_out, k) rows into buf
            coeff = self._phases[phase]  # (n_out, k)
            out = np.einsum("nk,nkc->nc", coeff, buf[idx])
            self._n_out = int(n_last) + 1
        else:
            out = np.zeros((0, x2.shape[1]), dtype=np.float32)
        self._in_seen = end_in
        self._hist = buf[-(k - 1) :].copy() if k > 1 else buf[:0].copy()
        # keep the counters small: shift the origin by whole periods of (L outputs <-> M inputs)
        periods = min(self._n_out // self.up, self._in_seen // self.down)
        if periods > 1000:
            self._n_out -= periods * self.up
            self._in_seen -= periods * self.down
        out = out.astype(np.float32, copy=False)
        return out[:, 0] if squeeze else out

    def drain(self, channels: int = 1) -> np.ndarray:
        """Push the filter's delay line out (zeros in): the last ~taps/2 input samples' worth of output."""
        if self.passthrough:
            return np.zeros((0,) if channels == 1 else (0, channels), dtype=np.float32)
        pad = np.zeros((self._k // 2,) if channels == 1 else (self._k // 2, channels), dtype=np.float32)
        return self.process(pad)
