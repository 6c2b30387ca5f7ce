"""Training in several processes (--strategy=multi_worker): who writes what.

`tf.distribute.MultiWorkerMirroredStrategy` runs the same program in every
process of the cluster that the environment variable TF_CONFIG describes
(`{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type":
"worker", "index": i}}`); every process runs the whole job, since every
training step, evaluation and prediction is a collective operation all of
them take part in. Only the chief (the task of type "chief", else worker 0)
writes the run folder; `worker_config` gives every other worker a temporary
run folder of its own, removed when its job ends, so the lock, run.json,
backup, progress record, TensorBoard logs, figures and model files of
--run_dir are the chief's alone.

A restarted cluster resumes from the chief's backup: `from_chief` gives
every worker the chief's count of completed epochs (the pipelines' seeds
depend on it), and `ChiefState` copies the chief's restored weights,
optimizer state and epoch into every worker before the first step, so the
other workers need no files of their own.

`prepare_model` works around two gaps of Keras 3 (3.15) under this
strategy, keras-team/keras#20585: `fit` reduces the first batch's nested
(x, y) structure to build the model (which the strategy's reduce cannot
take), and the per-step logs are averaged with `axis=0` on scalars.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

import keras
import tensorflow as tf

from cifar_denoise_adv.core import console
from cifar_denoise_adv.core.errors import UserError

TF_CONFIG = "TF_CONFIG"


@dataclasses.dataclass(frozen=True)
class Task:
    """This process's place in the cluster of TF_CONFIG."""

    type: str  # "chief" or "worker"
    index: int
    processes: int  # in the cluster, the chief's included
    has_chief: bool  # the cluster names a chief task (else worker 0 is it)

    @property
    def is_chief(self) -> bool:
        return self.type == "chief" or (self.index == 0 and not self.has_chief)


def task_from_environment() -> Task:
    """The task TF_CONFIG describes.

    Raises:
      UserError: naming TF_CONFIG when it is missing, not JSON, or lacks the
        cluster or this process's task in it.
    """
    text = os.environ.get(TF_CONFIG)
    if not text:
        raise UserError(
            "--strategy=multi_worker reads the cluster from the environment "
            "variable TF_CONFIG, which is not set (see BUILD.md, 'Several "
            "processes or hosts')."
        )
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, index = str(task["type"]), int(task["index"])
        count = sum(
            len(cluster[name]) for name in ("chief", "worker") if name in cluster
        )
        if task_type not in ("chief", "worker") or index >= len(cluster[task_type]):
            raise ValueError
    except (ValueError, TypeError, KeyError):
        raise UserError(
            f'TF_CONFIG={text!r}: expected JSON like {{"cluster": {{"worker": '
            '["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}, '
            "this process's task among the cluster's chief or workers."
        ) from None
    return Task(task_type, index, count, has_chief="chief" in cluster)


def is_chief(config) -> bool:
    """False only for a non-chief worker of a --strategy=multi_worker run."""
    if getattr(config, "strategy", "default") != "multi_worker":
        return True
    return task_from_environment().is_chief


@contextlib.contextmanager
def worker_config(config) -> Iterator:
    """The config this process runs: a non-chief worker's writes a temporary folder.

    A worker first joins the cluster (`join_cluster`), before anything can
    stop it, so that a worker that stops (e.g. the chief refusing its
    --run_dir) ends the others' collectives with an error instead of leaving
    them waiting for it to join. The chief (and every process of a
    one-process run) gets `config` unchanged; another worker of a
    --strategy=multi_worker run gets it with run_dir set to a new temporary
    folder, removed when the block ends. A block that ends well ends with a
    barrier: the workers leave together, so none sees another stop sending
    heartbeats while it still writes (TensorFlow logs that as a crash).
    """
    multi_worker = getattr(config, "strategy", "default") == "multi_worker"
    if multi_worker:
        join_cluster()
    if is_chief(config):
        yield config
    else:
        folder = tempfile.mkdtemp(prefix="cifar_denoise_adv_worker_")
        try:
            yield dataclasses.replace(config, run_dir=folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if multi_worker:
        from_chief(join_cluster(), 0)  # an all-reduce: every worker is here


def describe(run_dir: str) -> str:
    """This process's part in a multi-worker run, for the log."""
    task = task_from_environment()
    role = "the chief" if task.is_chief else "not the chief"
    where = (
        "writes the run folder"
        if task.is_chief
        else f"writes to {run_dir}, removed at the end"
    )
    return f"{task.type} {task.index} of {task.processes} processes, {role}: {where}"


@functools.cache
def join_cluster() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The process's one MultiWorkerMirroredStrategy, made on the first call.

    Making it starts this worker's server and waits until every process of
    TF_CONFIG has joined; TensorFlow allows it once per process.
    """
    task_from_environment()  # one line for a missing or bad TF_CONFIG
    console.hide_distribution_info()  # its devices and cluster, a dozen lines
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True for a MultiWorkerMirroredStrategy over more than one process."""
    # More replicas in sync than this process's devices: other processes.
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)


def _broadcast(strategy: tf.distribute.Strategy, values: list) -> list[tf.Tensor]:
    """The chief's `values` (tensors of any dtype) in every worker.

    One all-reduce: the chief's first replica contributes the values, every
    other replica zeros, all flattened into one float64 vector (exact for
    float32, bfloat16 and integers below 2**53).
    """
    tensors = [tf.convert_to_tensor(value) for value in values]
    flat = tf.concat([tf.reshape(tf.cast(t, tf.float64), [-1]) for t in tensors], 0)
    chief = task_from_environment().is_chief
    local = len(strategy.extended.worker_devices)

    def contribution(context):
        first_local = context.replica_id_in_sync_group % local == 0
        return flat if chief and first_local else tf.zeros_like(flat)

    summed = strategy.reduce(
        tf.distribute.ReduceOp.SUM,
        strategy.experimental_distribute_values_from_function(contribution),
        axis=None,
    )
    pieces = tf.split(summed, [int(tf.size(t)) for t in tensors])
    return [
        tf.cast(tf.reshape(piece, tf.shape(t)), t.dtype)
        for piece, t in zip(pieces, tensors, strict=True)
    ]


def from_chief(strategy: tf.distribute.Strategy, value: int) -> int:
    """The chief's `value` in every process (`value` itself outside multi-worker)."""
    if not is_multi_worker(strategy):
        return value
    return int(_broadcast(strategy, [tf.constant(value, tf.int64)])[0])


class ChiefState(keras.callbacks.Callback):
    """At the start of fit, the chief's weights, optimizer state and epoch everywhere.

    Comes after BackupAndRestore, which restored them from the chief's
    backup (the other workers' temporary backups are empty): a resumed
    cluster continues where its chief stopped. A no-op outside multi-worker.
    """

    def on_train_begin(self, logs=None):
        strategy = self.model.distribute_strategy
        if not is_multi_worker(strategy):
            return
        variables = list(self.model.variables)
        if self.model.optimizer is not None:
            variables += list(self.model.optimizer.variables)
        epoch = tf.constant(self.model._initial_epoch or 0, tf.int64)
        values = _broadcast(strategy, [v.value for v in variables] + [epoch])
        for variable, value in zip(variables, values, strict=False):
            variable.assign(value)
        # BackupAndRestore's own way of telling fit where to start.
        self.model._initial_epoch = int(values[-1])


def prepare_model(model: keras.Model, element_spec) -> None:
    """Lets `model.fit` and `evaluate` run under multi-worker (no-op otherwise).

    Keras 3.15 fails there (keras-team/keras#20585): (1) before the first
    step it reduces the first batch, an (x, y) structure of per-replica
    values, across workers, which the strategy cannot do with a structure
    ("Attempt to convert a value (PerReplica...)"); it only needs the
    batch's shapes and dtypes, which `element_spec` (the training dataset's)
    gives without drawing a batch, so the first epoch sees the pipeline's
    first pass as in one process; (2) it averages each step's scalar logs
    over replicas with `axis=0`; returned as [1]-vectors they average to the
    same scalars. The epoch logs (history, callbacks) come from the metrics
    read across all replicas either way.
    """
    strategy = model.distribute_strategy
    if not is_multi_worker(strategy):
        return

    def symbolic_build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=element_spec)

    def as_vectors(step):
        def wrapped(data):
            return tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(data))

        return wrapped

    model._maybe_symbolic_build = symbolic_build
    model.train_step = as_vectors(model.train_step)
    model.test_step = as_vectors(model.test_step)


def synchronize_batch_norm(model: keras.Model) -> int:
    """Batch norms of `model` computing their statistics over all replicas.

    With several replicas (mirrored or multi-worker), each batch norm would
    otherwise normalise with its replica's part of the batch and update its
    own copy of the moving statistics, so the replicas' copies drift apart
    (a worker's predictions stop matching the chief's saved model) and the
    result depends on the number of replicas. Synchronised (Keras'
    `synchronized`), the statistics are those of the global batch, as in one
    process. A no-op with one replica, where the usual two-pass moments
    stay (the synchronised ones use E[x^2] - E[x]^2).

    Returns:
      How many batch norms were synchronised.
    """
    if model.distribute_strategy.num_replicas_in_sync == 1:
        return 0
    count = 0
    pending = list(model.layers)
    while pending:
        layer = pending.pop()
        pending.extend(getattr(layer, "layers", []))
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with the sharding policy the multi-worker strategy applies.

    Our pipelines start from in-memory arrays, not files, so each worker
    builds the whole pipeline (same seeds: same order, same noise and
    augmentations) and keeps its part of every global batch
    (`AutoShardPolicy.DATA`, stated rather than left to AUTO's fallback):
    a step of W workers sees exactly the batch one process would.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def lost_worker(error: tf.errors.UnavailableError) -> UserError:
    """One line for a multi-worker run whose collective lost a worker.

    TensorFlow aborts every collective of the others when a worker stops
    sending heartbeats (killed, crashed, its host gone), with a long message
    naming the tasks; the run is resumed by starting every command again.
    """
    tasks = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", str(error))))
    lost = ", ".join(tasks) if tasks else "a worker"
    return UserError(
        f"--strategy=multi_worker: lost {lost} of the TF_CONFIG cluster (it "
        "stopped answering); start every worker's command again: the run "
        "resumes after the chief's last completed epoch."
    )
