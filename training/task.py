"""What is trained: a `Task` names its networks, optimizers, update phases and loss terms.

The trainer (training/trainer.py) and the per-backend step (training/backend.py) only ever see this
interface, so pixel training (`PixelTask`), GAN training (training/gan.py) and toy models share one loop.
"""
from keras import ops


class Task:
    """Backend-neutral training task.

    networks: {name: keras.Model}; the one named `primary` (default "generator") is validated and saved.
    optimizers: {phase: keras.optimizers.Optimizer}; phase names are network names.
    phases: network names updated in this order each step (e.g. ("generator", "discriminator")).
    ema: {network name: decay} of networks whose weights get an exponential moving average.
    compute_losses(phase, batch, training=True) -> (total scalar, {term name: scalar}), keras.ops only;
      it calls the networks itself (a GAN's generator phase calls D).
    phase_losses(phase, batch, carry) -> (total, terms, handoff): what the per-backend step calls. `carry` holds
      what the earlier phases of this step handed on ({name: tensor}, gradient stopped, computed before their
      optimizer updates); `handoff` is what this phase hands on (a GAN's generator phase hands its SR to the
      discriminator phase: one generator forward per step). Default: compute_losses, nothing handed on.
    batch: dict of float32 arrays, e.g. {"lr": BxhxWx3, "hr": Bx(sh)x(sw)x3} in [0, 255].
    """

    primary = "generator"
    # TensorFlow: optimizer steps run eagerly at the start of a run while the graph is traced beside them
    # (training/backend.py). Worth it where the trace is long (a GAN step: ~48 CPU-s, docs/aesrgan.md); a pixel
    # step traces in seconds and stays in the graph from step 1, so its numbers do not move.
    eager_first_steps = 0

    def __init__(self, networks, optimizers, phases=None, ema=None):
        self.networks = dict(networks)
        self.optimizers = dict(optimizers)
        self.phases = tuple(phases or self.optimizers)
        self.ema = dict(ema or {})
        for phase in self.phases:
            if phase not in self.networks or phase not in self.optimizers:
                raise ValueError(f"phase {phase!r} needs a network and an optimizer of that name")
        for name in self.ema:
            if name not in self.networks:
                raise ValueError(f"ema for unknown network {name!r}")

    def compute_losses(self, phase, batch, training=True):
        raise NotImplementedError

    def phase_losses(self, phase, batch, carry):
        """(total, terms, handoff) of one phase of a training step (see the class docstring)."""
        total, terms = self.compute_losses(phase, batch, training=True)
        return total, terms, {}

    def trainable_variables(self, phase):
        """Variables the optimizer of `phase` updates (default: the trainable weights of that network)."""
        return self.networks[phase].trainable_variables

    def build(self, batch):
        """Create every network's and optimizer's variables (before the first step or a resume)."""
        for net in self.networks.values():
            if not net.built:
                net(batch["lr"][:1])
        for phase in self.phases:
            opt = self.optimizers[phase]
            if not opt.built:
                opt.build(self.trainable_variables(phase))


class PixelTask(Task):
    """Pixel-loss SR training (what train.py did with compile + fit): one generator, one optimizer.

    loss: a callable(hr, sr) -> per-sample loss (losses.make_loss), logged as term `name`, weighted by `weight`.
    extra_terms: optional {term: (weight, callable(hr, sr))} added to the total with their weights.
    """

    def __init__(self, generator, optimizer, loss, name=None, ema_decay=None, extra_terms=None, weight=1.0):
        super().__init__({"generator": generator}, {"generator": optimizer}, ("generator",),
                         {"generator": ema_decay} if ema_decay else None)
        self.loss, self.weight = loss, float(weight)
        self.name = name or getattr(loss, "name", None) or "pixel"
        self.extra_terms = dict(extra_terms or {})

    def compute_losses(self, phase, batch, training=True):
        sr = self.networks["generator"](batch["lr"], training=training)
        hr = batch["hr"]
        value = ops.mean(self.loss(hr, sr))
        terms = {self.name: value}
        total = value * self.weight if self.weight != 1.0 else value
        for term, (weight, fn) in self.extra_terms.items():
            v = ops.mean(fn(hr, sr))
            terms[term] = v
            total = total + weight * v
        return total, terms


def gram_loss(config):
    """The pixel / GRAM loss of a config (losses.make_loss with its flags)."""
    import losses

    return losses.make_loss(config.get("loss", "mae"), pred_logvar=bool(config.get("pred_logvar")),
                            loss_mode=config.get("loss_mode", "l2"), attention=bool(config.get("attention")),
                            block_attention_gradient=bool(config.get("block_attention_gradient")))


__all__ = ["Task", "PixelTask", "gram_loss"]
