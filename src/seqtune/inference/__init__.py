"""Inference: batched decoding (generate), `seqtune predict` / `evaluate` (predict), and
`seqtune serve` (serve: the command; server: the web app, its batcher and page).
"""
