"""A progress bar over one epoch's rows, for sources whose epochs are long (streams, big files)."""
from __future__ import annotations

from ..training.callbacks import Callback


class RowProgress(Callback):
    """A tqdm bar per epoch counting rows, with rows per second and the epoch's ETA.

    Updated every ``every`` batches (the bar's own bookkeeping stays off the step's critical
    path). On a GPU, rows are counted when their step is queued, which runs ahead of the device
    by at most the launch queue: the rate is right over any stretch longer than that.
    """

    def __init__(self, every=64):
        self.every = int(every)
        self.bar = None

    def on_epoch_begin(self, trainer, epoch):
        from tqdm.auto import tqdm

        first = trainer.state.batch if epoch == trainer.start_epoch else 0
        rows = trainer.source.rows
        self.bar = tqdm(total=rows, initial=min(first * trainer.batch_size, rows), unit="rows", unit_scale=True,
                        desc=f"epoch {epoch + 1}/{trainer.epochs}", leave=False, dynamic_ncols=True)

    def on_batch_end(self, trainer, batch):
        if (batch + 1) % self.every == 0 and self.bar is not None:
            self.bar.update(min((batch + 1) * trainer.batch_size, self.bar.total) - self.bar.n)

    def on_epoch_end(self, trainer, epoch, logs):
        self._close()

    def on_train_end(self, trainer):
        self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
