"""User-facing errors: the CLI prints their message as one line and exits 2."""

import pickle
import struct
import zipfile

# What unpickling, unzipping or decoding arbitrary bytes raises (torch.load's weights-only unpickler pops empty stacks,
# indexes missing memo keys, unpacks short buffers …): a reader of a user's file catches these and names the file.
DAMAGED_FILE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, RuntimeError, IndexError, KeyError, TypeError, AttributeError, OverflowError,
    MemoryError, RecursionError, pickle.UnpicklingError, zipfile.BadZipFile, struct.error)


def one_line(message: object) -> str:
    """A message as one printable line: line breaks (any that ``str.splitlines`` knows) become spaces, other control
    characters are escaped, so text quoted from a bad input cannot add lines to stderr or drive the terminal."""
    text = " ".join(str(message).splitlines())
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)


class RsWsssError(Exception):
    """Bad input or a missing resource the user can fix; the message names the problem and the fix."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(message), *args)


class WeightsNotFound(RsWsssError):
    """Pretrained weights could not be resolved (offline, no file given)."""


class ConfigError(RsWsssError, ValueError):
    """A config key, value or choice is invalid; the message names the key and what it accepts."""


class InputNotFound(RsWsssError, FileNotFoundError):
    """A raster, vector layer, tags file, checkpoint or weights file does not exist."""


class OutputExists(RsWsssError, FileExistsError):
    """An output exists and ``--overwrite`` was not given (or it would replace an input)."""


class TrainingDiverged(RsWsssError, FloatingPointError):
    """The loss became NaN or infinite; the message names the step and what to change."""
