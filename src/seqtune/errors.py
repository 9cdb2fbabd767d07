"""Errors that reach the user as one clear line (the CLI prints them and exits non-zero)."""


class SeqtuneError(Exception):
    """A problem the user can fix; the message names what and where."""


class ConfigError(SeqtuneError):
    """A config key is unknown, of the wrong type, or out of range."""


class DataError(SeqtuneError):
    """An input file is missing, malformed, or holds bad rows (message names file and line)."""


class ModelError(SeqtuneError):
    """A model cannot be found or loaded."""


class TrainingDiverged(SeqtuneError):
    """The training loss or the weights became NaN/inf; the last good checkpoint is kept."""


class TrainingInterrupted(SeqtuneError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved and the run can be resumed."""
