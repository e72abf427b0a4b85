"""Schedule, EMA (of weights and BatchNorm statistics), losses, optimizer masks and config checks of the training system."""

import io
import re
import subprocess
import sys

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import digits, googlenet
from inception import GoogLeNetOutput
from tests.child_process import HANG_GUARD_SECONDS
from tests.local_cluster import REPO_ROOT
from train import schedule
from train.config import check_config
from train.losses import total_loss
from train.optim import create_optimizer
from train.state import create_train_state, ema_decay_at, polyak_update
from train.step import make_train_step


def test_paper_schedule_is_staircase_by_epoch():
  config = googlenet.get_config()
  num_train = 1_281_167
  lr = schedule.create_learning_rate_fn(config, num_train)
  per_epoch = num_train / config.batch_size
  for epoch in (0, 7, 8, 15, 16, 40, 249):
    step = int(np.ceil(epoch * per_epoch))
    assert float(lr(step)) == pytest.approx(0.01 * 0.96 ** (epoch // 8), rel=1e-5), epoch
  # Just before a boundary the previous rate still holds.
  assert float(lr(int(8 * per_epoch) - 1)) == pytest.approx(0.01, rel=1e-5)


def test_linear_scaling_and_warmup():
  config = googlenet.get_config()
  config.batch_size, config.warmup_epochs = 256, 2.0
  lr = schedule.create_learning_rate_fn(config, 2560)  # 10 steps per epoch
  peak = 0.01 * 256 / 32
  assert float(lr(9)) == pytest.approx(peak * 10 / 20, rel=1e-5)
  assert float(lr(19)) == pytest.approx(peak, rel=1e-5)


def test_total_steps_from_epochs_or_override():
  config = googlenet.get_config()
  assert schedule.total_train_steps(config, 1_281_167) == int(np.ceil(250 * 1_281_167 / 32))
  config.num_train_steps = 17
  assert schedule.total_train_steps(config, 1_281_167) == 17


def test_polyak_update_formula():
  ema = {"w": jnp.array([1.0, 2.0])}
  params = {"w": jnp.array([3.0, -2.0])}
  got = polyak_update(ema, params, 0.9)
  np.testing.assert_allclose(got["w"], [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * -2], rtol=1e-6)


def test_ema_decay_warms_up_to_the_configured_value():
  assert float(ema_decay_at(jnp.array(0), 0.9999)) == pytest.approx(0.1)
  assert float(ema_decay_at(jnp.array(90), 0.9999)) == pytest.approx(91 / 100)
  assert float(ema_decay_at(jnp.array(10**7), 0.9999)) == pytest.approx(0.9999)


def test_aux_losses_enter_with_weight_point_three():
  labels = jnp.array([0, 1])
  main = jnp.array([[2.0, 0.0], [0.0, 1.0]])
  aux1, aux2 = jnp.array([[0.0, 3.0], [1.0, 0.0]]), jnp.zeros((2, 2))
  ce = lambda logits: optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  loss, parts = total_loss(main, (aux1, aux2), labels, aux_weight=0.3)
  assert float(loss) == pytest.approx(float(ce(main) + 0.3 * ce(aux1) + 0.3 * ce(aux2)), rel=1e-6)
  assert set(parts) == {"main_loss", "aux1_loss", "aux2_loss"}


def test_weight_decay_on_kernels_only_and_double_bias_rate():
  config = googlenet.get_config()
  config.momentum = 0.0
  tx = create_optimizer(config, lambda step: 0.1)
  params = {"conv": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}}
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.1 * 2e-4 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_array_equal(updates["conv"]["bias"], np.zeros(2))
  unit_grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(unit_grads, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["bias"], -0.1 * 2.0 * np.ones(2), rtol=1e-6)


@pytest.mark.parametrize("config_fn", [googlenet.get_config, digits.get_config])
def test_shipped_configs_pass_checks(config_fn):
  check_config(config_fn())


def test_unknown_config_key_is_named():
  config = digits.get_config()
  config.ema_decy = 0.5
  with pytest.raises(ValueError, match="'ema_decy'"):
    check_config(config)
  config = digits.get_config()
  config.data.crop_ares_range = (0.1, 1.0)
  with pytest.raises(ValueError, match="'data.crop_ares_range'"):
    check_config(config)


def test_wrong_config_type_is_named():
  config = digits.get_config()
  with config.ignore_type():
    config.batch_size = "64"
  with pytest.raises(ValueError, match="'batch_size'.*int"):
    check_config(config)


def test_unknown_model_field_is_named():
  config = digits.get_config()
  config.model.widht = 0.5
  with pytest.raises(ValueError, match="widht"):
    check_config(config)


class _TinyBatchNormNet(nn.Module):
  """Just enough model for the train step: BatchNorm statistics and logits, no aux heads."""

  @nn.compact
  def __call__(self, images, train):
    features = nn.BatchNorm(use_running_average=not train, momentum=0.5)(
        images.reshape(images.shape[0], -1)
    )
    return GoogLeNetOutput(logits=nn.Dense(10)(features), aux_logits=(), features=features)


@pytest.mark.parametrize("average_batch_stats", [True, False])
def test_ema_model_averages_the_batchnorm_statistics(average_batch_stats):
  config = digits.get_config()
  config.ema_decay = 0.5
  config.ema_batch_stats = average_batch_stats
  model = _TinyBatchNormNet()
  images = jax.random.normal(jax.random.key(0), (8, 4, 4, 3)) * 3.0 + 1.0
  batch = {"image": images, "label": jnp.arange(8) % 10}
  tx = optax.sgd(0.1)
  state = create_train_state(model.init(jax.random.key(1), images, train=False), tx)
  step = jax.jit(make_train_step(model, tx, lambda s: 0.1, config))
  previous = state
  for _ in range(3):
    previous, state = state, step(state, batch, jax.random.key(2))[0]
  decay = ema_decay_at(previous.step, config.ema_decay)
  for ema_old, raw, ema_new in zip(
      jax.tree.leaves(previous.ema_batch_stats),
      jax.tree.leaves(state.batch_stats),
      jax.tree.leaves(state.ema_batch_stats),
  ):
    expected = decay * ema_old + (1 - decay) * raw if average_batch_stats else raw
    np.testing.assert_allclose(ema_new, expected, rtol=1e-6)
    # The moving statistics move every step, so their average lags behind them.
    assert average_batch_stats != bool(np.allclose(ema_new, raw))
  assert state.ema_variables["batch_stats"] is state.ema_batch_stats


def test_loading_a_config_imports_no_framework():
  """A config describes a run; reading one must not import TensorFlow, JAX or OpenCV."""
  script = (
      "import glob, importlib, os, sys\n"
      "for path in sorted(glob.glob('configs/*.py')):\n"
      "  name = os.path.basename(path)[:-3]\n"
      "  if name != '__init__':\n"
      "    importlib.import_module('configs.' + name).get_config()\n"
      "heavy = ('tensorflow', 'tensorflow_datasets', 'jax', 'flax', 'orbax', 'cv2', 'torch')\n"
      "print(sorted(m for m in heavy if m in sys.modules))\n"
  )
  done = subprocess.run(
      [sys.executable, "-c", script],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
      check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.strip() == "[]"


def test_progress_bars_only_where_someone_watches(monkeypatch, capsys):
  from runtime import progress as reporting

  monkeypatch.delenv("GOOGLENET_PROGRESS_BARS", raising=False)
  monkeypatch.delitem(sys.modules, "ipykernel", raising=False)  # another test may import it
  monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: log lines only
  assert not reporting.someone_is_watching()
  assert isinstance(reporting.progress_bar(3, "quiet"), reporting._NoBar)
  monkeypatch.undo()
  monkeypatch.setenv("GOOGLENET_PROGRESS_BARS", "1")
  bar = reporting.progress_bar(3, "shown", unit="image")
  bar.update(3)
  bar.close()
  assert re.search(r"shown: 100%.*3/3", capsys.readouterr().err)


def test_progress_log_leaves_the_compiling_first_update_out_of_the_rate(
    monkeypatch, caplog, absl_info
):
  from runtime import progress

  now = [0.0]
  monkeypatch.setattr(progress.time, "time", lambda: now[0])
  monkeypatch.setenv("GOOGLENET_PROGRESS_BARS", "0")
  tracker = progress.Progress("scoring regions", 3, "batch", every_seconds=5.0)
  with caplog.at_level("INFO"):
    now[0] = 50.0
    tracker.update()  # the first batch, compilation included
    now[0] = 60.0
    tracker.update()  # one batch in 10 s after it
  # 1 batch per 10 s, not 2 per 60 s; one batch left: 10 s.
  assert "scoring regions: 2/3 batches, 0.1 batches/s, ETA 0:00:10" in caplog.text
