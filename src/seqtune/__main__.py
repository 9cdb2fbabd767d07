from seqtune.cli import entry

entry()
