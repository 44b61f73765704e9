"""Training core, by concern: `options` (every option declared once), `config` (the one resolver: parser,
profiles, args.json), `setup` (datasets, network, task, initial weights, run directory), `task` (what is
trained: networks, optimizers, phases, loss terms), `backend` (the per-backend train step), `trainer` (the
loop: EMA, validation, checkpoints, exact resume, logs), `speed` (the default compile setting).
See docs/DESIGN.md "Trainer". Submodules load lazily so `training.config` stays free of Keras.
"""
_EXPORTS = {"Task": "task", "PixelTask": "task", "Trainer": "trainer", "EMA": "trainer", "Validation": "trainer",
            "read_state": "trainer"}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
