"""The learning loop: snapshot, training mix, the training job, evaluation sets, the gate,
promotion, the run report and the nightly schedule."""
