"""Experiment tooling over run folders: sweeps (sweep_spec: what to run; sweep: running
it), result tables (results), and the HTML report with its plots (report, plots).

Only the CLI imports this package; it reads run folders and never trains in-process.
"""
