"""Multi-worker set-up: TF_CONFIG, who writes, batch split, quiet logs.

The two-process training run itself is tests/denoising/test_multi_worker.py.
"""

import dataclasses
import json
import logging
import os

import keras
import pytest
import tensorflow as tf

from cifar_denoise_adv.core import console
from cifar_denoise_adv.core import training
from cifar_denoise_adv.core import workers
from cifar_denoise_adv.core.errors import UserError

CLUSTER = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


def _set_task(monkeypatch, task_type, index, cluster=CLUSTER):
    monkeypatch.setenv(
        workers.TF_CONFIG,
        json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}),
    )


@dataclasses.dataclass(frozen=True)
class _Config:
    run_dir: str
    strategy: str = "multi_worker"


def test_worker_0_is_the_chief_unless_the_cluster_names_one(monkeypatch):
    _set_task(monkeypatch, "worker", 0)
    task = workers.task_from_environment()
    assert (task.type, task.index, task.processes, task.is_chief) == (
        "worker",
        0,
        2,
        True,
    )
    _set_task(monkeypatch, "worker", 1)
    assert not workers.task_from_environment().is_chief
    with_chief = {"chief": ["127.0.0.1:3"], **CLUSTER}
    _set_task(monkeypatch, "worker", 0, with_chief)
    assert not workers.task_from_environment().is_chief
    assert workers.task_from_environment().processes == 3
    _set_task(monkeypatch, "chief", 0, with_chief)
    assert workers.task_from_environment().is_chief


@pytest.mark.parametrize(
    "value",
    [
        None,
        "not json",
        json.dumps({"cluster": CLUSTER}),
        json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}}),
        json.dumps({"cluster": CLUSTER, "task": {"type": "ps", "index": 0}}),
    ],
    ids=["missing", "not-json", "no-task", "index-outside", "other-type"],
)
def test_a_bad_tf_config_is_one_line_naming_it(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(workers.TF_CONFIG, raising=False)
    else:
        monkeypatch.setenv(workers.TF_CONFIG, value)
    with pytest.raises(UserError, match="TF_CONFIG") as error:
        workers.task_from_environment()
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="TF_CONFIG"):
        training.make_strategy("multi_worker")


def test_only_the_chief_keeps_the_run_folder(monkeypatch, tmp_path):
    config = _Config(run_dir=str(tmp_path / "run"))
    # Joining the cluster waits for its other processes (none here).
    joined = []

    def join():
        joined.append(True)
        return tf.distribute.get_strategy()  # one process: no collectives

    monkeypatch.setattr(workers, "join_cluster", join)
    _set_task(monkeypatch, "worker", 0)
    with workers.worker_config(config) as chief:
        assert chief is config
    _set_task(monkeypatch, "worker", 1)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    with pytest.raises(RuntimeError), workers.worker_config(config) as other:
        assert other.run_dir != config.run_dir
        assert os.path.dirname(other.run_dir) == str(tmp_path)
        (tmp_path / other.run_dir / "metrics.json").write_text("{}")
        raise RuntimeError("the job failed")
    assert not os.path.exists(other.run_dir)  # removed, even after a failure
    assert not (tmp_path / "run").exists()
    # The chief joined, then met the others at the end; worker 1 joined
    # (its block failed: no meeting at the end).
    assert joined == [True, True, True]
    # Without --strategy=multi_worker, TF_CONFIG does not matter.
    one = dataclasses.replace(config, strategy="default")
    with workers.worker_config(one) as unchanged:
        assert unchanged is one
    assert len(joined) == 3


def test_the_global_batch_must_split_evenly_over_the_replicas():
    training.check_batch_size(64, 1)
    training.check_batch_size(64, 4)
    with pytest.raises(UserError, match=r"--batch_size=10 .* multiple of 4"):
        training.check_batch_size(10, 4)


def test_one_process_models_are_left_as_they_are():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(inputs))
    model.compile(loss="mse")
    step = model.train_step
    workers.prepare_model(model, None)
    assert model.train_step == step
    assert workers.synchronize_batch_norm(model) == 0
    assert not model.layers[1].synchronized
    assert not workers.is_multi_worker(tf.distribute.get_strategy())
    assert workers.from_chief(tf.distribute.get_strategy(), 7) == 7


def test_distribution_info_lines_are_hidden_and_warnings_kept():
    console.hide_distribution_info()
    console.hide_distribution_info()  # once is enough: no second filter
    tf_logger = logging.getLogger("tensorflow")
    assert tf_logger.filters.count(console._DISTRIBUTION_INFO) == 1

    def record(level, path):
        return logging.LogRecord("tensorflow", level, path, 1, "m", None, None)

    path = "/venv/tensorflow/python/distribute/cross_device_ops.py"
    assert not tf_logger.filter(record(logging.INFO, path))
    assert tf_logger.filter(record(logging.WARNING, path))
    assert tf_logger.filter(record(logging.INFO, "/venv/tensorflow/python/x.py"))


def test_a_lost_worker_is_one_line_naming_it_and_how_to_resume():
    # TensorFlow's message when worker 1 was killed during a training step.
    error = tf.errors.UnavailableError(
        None,
        None,
        "Collective ops is aborted by: Error reported from /job:worker/task:1: "
        "The following tasks are unhealthy (stopped sending heartbeats):\n"
        "/job:worker/replica:0/task:1\nThe tasks have crashed.",
    )
    message = str(workers.lost_worker(error))
    assert message.startswith(
        "--strategy=multi_worker: lost /job:worker/replica:0/task:1 of the TF_CONFIG"
    )
    assert "start every worker's command again" in message and "\n" not in message
    assert "lost a worker of" in str(
        workers.lost_worker(tf.errors.UnavailableError(None, None, "Socket closed"))
    )
