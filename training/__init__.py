"""Helpers of train.py's loop, each in its own module: ``loading`` (the resumable sampler and seeded loaders),
``validation`` (validation sets and val_log.csv), ``progress`` (the progress line), ``interrupts`` (Ctrl-C),
``distributed`` (the process group under torchrun and the per-rank test report) and ``write_errors`` (a failed write
as one line). train.py keeps the loop and its flags."""
