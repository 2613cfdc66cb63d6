"""The training progress line: mean losses, samples/s and ETA since the last report."""

from __future__ import annotations

import time


def due(iteration: int, freq: int) -> bool:
    """True every ``freq`` iterations (never for ``freq`` <= 0)."""
    return freq > 0 and iteration % freq == 0


class ProgressMeter:
    """Mean losses, samples/s and ETA over the iterations since the last report."""

    def __init__(self, n_iters: int, samples_per_iteration: int):
        self.n_iters, self.samples_per_iteration = n_iters, samples_per_iteration
        self.reset()

    def reset(self):
        self.sums: dict[str, float] = {}
        self.count = 0
        self.start = time.perf_counter()

    def add(self, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def report(self, iteration: int, epoch: int, epoch_step: int, iters_per_epoch: int, lr: float):
        """(line, mean losses) for the iterations since the last report; starts a new window."""
        means = {k: v / max(1, self.count) for k, v in self.sums.items()}
        seconds = max(time.perf_counter() - self.start, 1e-9)
        speed = self.count * self.samples_per_iteration / seconds
        eta = (self.n_iters - iteration) * seconds / max(1, self.count)
        losses = " ".join(f"{k} {v:.4g}" for k, v in means.items() if k not in ("real_fraction", "R_fraction"))
        real = f" | real {means['real_fraction']:.2f}" if "real_fraction" in means else ""
        real += f" | with R {means['R_fraction']:.2f}" if "R_fraction" in means else ""
        line = (f"iter {iteration}/{self.n_iters} | epoch {epoch} ({epoch_step}/{iters_per_epoch}) | {losses}{real} | "
                f"lr {lr:.3g} | {speed:.2f} samples/s | ETA {format_seconds(eta)}")
        self.reset()
        return line, means


def format_seconds(seconds: float) -> str:
    """``1m05s``, ``2h03m04s`` or ``1d02h03m``."""
    seconds = int(round(seconds))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
