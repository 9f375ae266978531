"""Running sweeps: plan (load a sweep file, filter, plan, estimate), claims and locks, progress, the
sequential and Ray runners, and `rundir`, the one writer and reader of the run-directory format.

The runner calls `zoology.training.train(config, callbacks)` and records what it reports; nothing
below the runner knows where results are kept.
"""
