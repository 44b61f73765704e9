"""Training core: configuration schema (config), what is trained (task), the per-backend step (backend) and
the loop with EMA, validation, checkpoints and exact resume (trainer). See docs/DESIGN.md "Trainer"."""
from training.task import PixelTask, Task  # noqa: F401
from training.trainer import EMA, Trainer, Validation, read_state  # noqa: F401
