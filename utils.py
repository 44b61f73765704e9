"""Small shared helpers: user-facing errors, atomic file writes, the CLI entry wrapper and its start-up checks."""
import argparse
import contextlib
import errno
import importlib.abc
import importlib.util
import os
import sys
import tempfile
import warnings


_UMASK = os.umask(0)
os.umask(_UMASK)


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2, no traceback."""


KERAS_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")
# OSError numbers that are the user's to fix (space, quota, permissions), not a bug: one line, exit 2.
_USER_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def run_cli(main, argv=None):
    """Run `main(argv)` and turn UserError / Ctrl-C / a full disk into a one-line message and a non-zero exit."""
    try:
        check_backend()
        quiet_tensorflow_start()
        status = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        if e.errno not in _USER_OS_ERRORS:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"error: {e.strerror}{where}; free space or choose another output, then run again "
              "(finished files are complete: every file is written under a temporary name first)", file=sys.stderr)
        sys.exit(2)
    sys.exit(status if isinstance(status, int) else 0)  # main() may return a result (train.py: the run dir)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad or missing option is `error: ...`, exit 2 (run_cli), not usage text."""

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


def check_backend(environ=None):
    """UserError when KERAS_BACKEND names no Keras backend (Keras itself would raise at import)."""
    backend = (os.environ if environ is None else environ).get("KERAS_BACKEND")
    if backend is not None and backend not in KERAS_BACKENDS:
        raise UserError(f"KERAS_BACKEND={backend!r} is not a Keras backend; use one of tensorflow (the default), "
                        "jax or torch")


# TensorFlow's C++ start-up lines that a user cannot act on (written to fd 2 before its logging is set up).
_TF_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
             "cpu_feature_guard", "To enable the following instructions", "rebuild TensorFlow with the appropriate",
             "Unable to register cuDNN factory", "Unable to register cuBLAS factory", "Unable to register cuFFT",
             "computation placer already registered", "TF-TRT Warning", "could not open file to read NUMA node",
             "Could not find cuda drivers", "CUDA drivers on your machine")


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Imports tensorflow with fd 2 captured, then writes back every captured line but TensorFlow's start-up
    notices (all of it when the import fails)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                with _filtered_stderr(_TF_NOISE):
                    loader.exec_module(module)

        spec.loader = Loader()
        return spec


def quiet_tensorflow_start():
    """Hide TensorFlow's start-up notices in this process (the CLIs call it first; tests need not)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())


@contextlib.contextmanager
def _filtered_stderr(noise):
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile()
        os.dup2(capture.fileno(), 2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (e.g. captured by a test runner)
        yield
        return
    failed = True
    try:
        yield
        failed = False
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
        capture.close()
        keep = text if failed else "".join(line for line in text.splitlines(True)
                                           if not any(n in line for n in noise))
        if keep:
            sys.stderr.write(keep)
            sys.stderr.flush()


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
    """One-line warning on stderr (no source line, unlike warnings.warn's default format); printed through tqdm,
    so it never lands on a progress bar's line."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(f"warning: {message}", file=sys.stderr)
        return
    tqdm.write(f"warning: {message}", file=sys.stderr)


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
