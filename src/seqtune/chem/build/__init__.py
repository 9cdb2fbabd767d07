"""The verified-dataset builder behind `seqtune data chem`: sources (MOSES, PubChem, NCI,
user files), shards (per-molecule clean/name/verify in worker processes), walk (shards handed
out and taken back in order), splits (random and scaffold) and dataset (the build itself and
its command line).
"""
