"""Real-ESRGAN's batch granularity over a loader: batch-level draws and the training-pair pool, kept exact on resume.

    train = ReferenceBatches(data.HRPatches(hr, 4, RealESRGANTransform(config), ...))   # or reference_batches(...)
    batch = train.batch(epoch, index)          # what the trainer calls; the same function of (seed, epoch, index)

draws="batch": the choices RealESRGANModel.feed_data makes once per batch (`pipeline.batch_params`) come from
a generator keyed by (seed, epoch, the sample's own batch); everything else per sample, as before.
pool_size=Q (RealESRGANModel._dequeue_and_enqueue, queue_size 180): the stream of fresh batches goes through a
pool of Q pairs that lives across epochs: while it fills (the first Q / B steps) each fresh batch is used as is
and also stored; then each step shuffles the pool, hands out its first B pairs and puts the fresh batch in their
places. Only sample *indices* go through the pool: which sample (epoch, index) fills each slot of step g is
simulated from step 0 with a permutation keyed by (seed, g) (snapshots every 256 steps; ~10 us a step), and
the sample itself is made from its own key as always. So batch b of epoch e is still a pure function of
(seed, epoch, b): resume, workers and sharding give the same batches, and no pixels are stored.
"""
import threading

import numpy as np

from utils import UserError

_BATCH_SALT = 0x5EED_BA7C_0000_0001  # key spaces apart from the samples' (seed, epoch << 32 | index)
_POOL_SALT = 0x5EED_9001_0000_0002
_SNAPSHOT = 256


class ReferenceBatches:
    """`sampler` (data.HRPatches with a RealESRGANTransform) with batch-level draws and / or the pair pool.

    draws, pool_size: default from the transform's config ("draws", "pool_size"). Other attributes are the
    sampler's."""

    def __init__(self, sampler, draws=None, pool_size=None):
        self.sampler = sampler
        config = sampler.transform.config
        self.draws = draws or config["draws"]
        self.pool_size = int(config["pool_size"] if pool_size is None else pool_size)
        b = int(sampler.batch_size)
        if self.pool_size and self.pool_size % b:
            raise UserError(f"degradation option pool_size = {self.pool_size} is not a multiple of the batch size "
                            f"{b} (Real-ESRGAN's queue_size rule); use e.g. {max(b, self.pool_size // b * b)}")
        self._lock = threading.Lock()
        self._snapshots = {0: np.zeros(self.pool_size, np.int64)}

    def __getattr__(self, name):
        return getattr(self.sampler, name)

    def _key(self, salt, word):
        seed = int(self.sampler.seed) & 0xFFFFFFFFFFFFFFFF
        return np.random.Generator(np.random.Philox(key=[seed ^ salt, int(word) & 0xFFFFFFFFFFFFFFFF]))

    def _epoch(self, epoch):
        return 0 if getattr(self.sampler, "fixed", False) else int(epoch)

    # -- the pool (sample ids only: id = global step * B + slot) ------------------------------------------

    def _step(self, queue, g):
        """Advance the pool by step g in place; the ids handed out at step g."""
        b, q = int(self.sampler.batch_size), self.pool_size
        fresh = np.arange(g * b, (g + 1) * b, dtype=np.int64)
        if g < q // b:  # filling: the fresh batch is used and stored
            queue[g * b: (g + 1) * b] = fresh
            return fresh
        queue[:] = queue[self._key(_POOL_SALT, g).permutation(q)]
        out = queue[:b].copy()
        queue[:b] = fresh
        return out

    def pool_ids(self, g):
        """The global sample ids handed out at global step g (epoch * steps + batch)."""
        with self._lock:
            start = max(k for k in self._snapshots if k <= g)
            queue = self._snapshots[start].copy()
        for k in range(start, g):
            self._step(queue, k)
            if (k + 1) % _SNAPSHOT == 0:
                with self._lock:
                    self._snapshots.setdefault(k + 1, queue.copy())
        return self._step(queue, g)

    def source(self, epoch, index):
        """[(epoch, sample index)] of the B slots of batch `index` of `epoch`."""
        b, steps = int(self.sampler.batch_size), int(self.sampler.steps)
        epoch = self._epoch(epoch)
        if not self.pool_size:
            return [(epoch, int(index) * b + k) for k in range(b)]
        ids = self.pool_ids(epoch * steps + int(index))
        return [(int(i) // (steps * b), int(i) % (steps * b)) for i in ids]

    # -- samples and batches -------------------------------------------------------------------------------

    def sample(self, epoch, index):
        """Sample `index` of `epoch` with its batch's shared choices (draws="batch")."""
        s = self.sampler
        rng, *where = s._params(epoch, index)  # the loader's own draw and crop of this sample
        _, hr = s._crops(*where)
        shared = {}  # per-sample draws
        if self.draws == "batch":
            batch = int(index) // int(s.batch_size)
            shared = s.transform.batch_params(self._key(_BATCH_SALT, (self._epoch(epoch) << 32) | batch))
        out = s.transform(np.ascontiguousarray(hr), rng, shared=shared)
        return {k: np.asarray(v, np.float32) for k, v in out.items()}

    def batch(self, epoch, index, process_index=0, process_count=1):
        """Batch `index` of `epoch` (this process's share of its slots), as the sampler's `batch`."""
        from data import shard_indices

        slots = self.source(epoch, index)
        samples = [self.sample(*slot) for slot in shard_indices(slots, process_index, process_count)]
        return {k: np.stack([smp[k] for smp in samples]) for k in samples[0]}


def reference_batches(sampler):
    """`sampler` wrapped in ReferenceBatches when its transform asks for batch draws or a pool, else itself."""
    config = getattr(getattr(sampler, "transform", None), "config", None) or {}
    if config.get("draws", "sample") == "batch" or config.get("pool_size", 0):
        return ReferenceBatches(sampler)
    return sampler
