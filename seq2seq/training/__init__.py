"""Training: the loop, one optimizer step, the schedule, progress, the best checkpoints,
exact resume, the run directory, validation, and the processes of a distributed run."""
