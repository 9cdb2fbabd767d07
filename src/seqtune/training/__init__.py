"""Training: the loop (loop), its speed settings (speed), batches (batching, prefix),
checkpoints and exact resume (checkpoint), and metric logging (tracking).

Imports the core (config, io, modeling, ...) and nothing above it: the run pipeline,
`seqtune check` and the bench call into it, never the other way round.
"""
