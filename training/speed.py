"""The default compile setting of the train step, in one place (benchmarks/train_speed.py measures them).

Change the table below to change train.py's default; `--jit-compile / --no-jit-compile` overrides it.
TensorFlow: oneDNN kernels without XLA were the fastest measured CPU setting on this project's AVX-512 machine
(issue 9: tf-onednn 1.791 s/step, tf-xla-onednn 2.073, PyTorch plain 2.164 for edsr-16 x2, batch 16), so XLA is
off and oneDNN on (train.py sets TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow starts). JAX: its step is always
jitted (an unjitted JAX step runs op by op and is many times slower). PyTorch: eager.
"""
DEFAULT_JIT = {"tensorflow": False, "jax": True, "torch": False}  # TensorFlow: by CPU features, see below
ONEDNN_DEFAULT = "1"  # TF_ENABLE_ONEDNN_OPTS when the user has not set it


def cpu_has_avx512():
    """True when the CPU reports AVX-512 (Linux /proc/cpuinfo flags); False elsewhere or when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def default_jit_compile(backend=None):
    """Whether train.py XLA-compiles the train step when --jit-compile is not given.

    TensorFlow on CPU is chosen by CPU features (benchmarks/train_speed.py, docs/speed.md): with AVX-512 the
    oneDNN kernels alone were fastest (XLA 16% slower, issue 9's run), on an AVX2-only CPU XLA + oneDNN was
    (0.874x PyTorch against 0.936x without XLA). Other backends: the DEFAULT_JIT table.
    """
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend == "tensorflow":
        return not cpu_has_avx512()
    return DEFAULT_JIT.get(backend, False)
