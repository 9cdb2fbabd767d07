"""seqtune: turn a small pretrained causal LM into a sequence-to-sequence specialist."""

__version__ = "0.1.0"
