"""User-facing errors: one line on stderr and a non-zero exit, never a traceback."""
import sys
import warnings
from dataclasses import dataclass


class VPCError(Exception):
    """Bad input or a missing prerequisite; the message tells the user what to do."""


@dataclass(frozen=True)
class FileKind:
    """What a kind of file is called, and the step that makes it (said in every error about it)."""

    what: str
    remedy: str       # e.g. "rerun ObjectDetection/run.py with the same --dataset, --consecutive and --work_num"


EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def warn(message):
    """One-line warning on stderr (a skipped video, a fallback a user should know about)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def run_main(main, argv=None):
    """Run a stage's ``main(argv)``; turn VPCError and Ctrl-C into one line and an exit code."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        return main(argv)
    except VPCError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except OSError as error:        # a disk or file failure no step turned into a message of its own
        reason = " ".join(str(error.strerror or error).split())
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {reason}{where}; finished files are kept, a rerun resumes", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: finished files are kept, a rerun resumes", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
