"""gpunn.data's error: a module of its own, so that every part of gpunn.data (the statistics too, which
gpunn.data.base imports) raises the same class without an import cycle."""


class DataError(ValueError):
    """Bad data in a file or a stream; the message names the file (and the rows, when it can)."""
