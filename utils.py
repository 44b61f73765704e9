"""Small shared helpers: user-facing errors, atomic file writes, CLI entry wrapper."""
import contextlib
import os
import sys
import tempfile
import warnings


_UMASK = os.umask(0)
os.umask(_UMASK)


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2, no traceback."""


def run_cli(main, argv=None):
    """Run `main(argv)` and turn UserError / Ctrl-C into a one-line message and a non-zero exit."""
    try:
        status = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)  # main() may return a result (train.py: the run dir)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed onto `path` in one step.

    Readers never see a half-written file, and an interrupted write leaves the old file (or none).
    The temporary name keeps the extension, since writers such as Keras and Pillow pick the format from it.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, exist_ok=True)
        stem, ext = os.path.splitext(os.path.basename(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{ext}", dir=directory)
        os.close(fd)
    except OSError as e:
        raise UserError(f"cannot write to {directory}: {e.strerror}; choose a writable output directory") from e
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the permissions a plain open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def ensure_writable_dir(path):
    """Create `path` if needed and check we can write there; UserError otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f"cannot write to output directory {path}: {e.strerror}") from e
    return path


def warn(message):
    """One-line warning on stderr (no source line, unlike warnings.warn's default format)."""
    print(f"warning: {message}", file=sys.stderr)


def parse_id_range(text):
    """'1-800' or '1-10,801-810' or '5' -> sorted list of ints."""
    ids = set()
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                ids.update(range(int(lo), int(hi) + 1))
            elif part:
                ids.add(int(part))
    except ValueError:
        raise UserError(f"bad image id range {text!r}; expected e.g. 1-800 or 1-10,801-810") from None
    return sorted(ids)


warnings.filterwarnings("ignore", message=".*PyDataset.*super\\(\\).__init__.*")
