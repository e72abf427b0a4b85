"""The paper's recipe: GoogLeNet (`paper` variant) on ImageNet-2012 (TFDS `imagenet2012`).

    python main.py --config=configs/googlenet.py --workdir=/tmp/googlenet \
        --config.data.data_dir=$HOME/tensorflow_datasets

Section 6 of the paper and the BVLC Caffe solver (`models/bvlc_googlenet/solver.prototxt`):
SGD with momentum 0.9, base lr 0.01 at batch 32, lr x 0.96 every 8 epochs (Caffe: every 320,000
iterations of 32 images), weight decay 2e-4 (not on biases), biases at 2x learning rate,
max_iter 10,000,000 (250 epochs), aux losses weighted 0.3, dropout 40% / 70%, Polyak averaging,
the paper's crop sampling and photometric distortions. Every other config derives from this one.
"""
import ml_collections

import input_pipeline


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = ml_collections.ConfigDict(dict(
      variant="paper",
      num_classes=1000,
      width=1.0,
      dropout_rate=0.4,
      aux_dropout_rate=0.7,
      aux_heads=True,
      # bfloat16 on GPU/TPU halves activation memory; parameters stay float32. On XLA:CPU
      # bfloat16 is slower than float32 (train/compiler_options.py), and training warns.
      dtype="float32",
      param_dtype="float32",
      # Op formulations: 'auto' uses the CPU-fast ones only in programs lowered for CPU and
      # XLA's own on GPU/TPU (inception/kernels.py); 'cpu' or 'xla' forces one everywhere.
      kernels="auto",
  ))

  config.data = input_pipeline.default_data_config()
  config.data.source = "tfds:imagenet2012"
  config.data.train_split = "train"
  config.data.eval_split = "validation"
  config.data.image_size = 224
  # The Caffe reference build takes BGR 0-255 minus the per-channel means (104, 117, 123).
  config.data.normalization = "caffe"

  # Global batch over all devices and hosts; the learning rate scales linearly with it
  # (Goyal et al. 2017) from base_learning_rate at lr_reference_batch_size.
  config.batch_size = 32
  config.eval_batch_size = 250
  config.base_learning_rate = 0.01
  config.lr_reference_batch_size = 32
  config.warmup_epochs = 0.0
  config.lr_decay_factor = 0.96
  config.lr_decay_every_epochs = 8.0
  config.num_epochs = 250.0
  # When positive, overrides num_epochs (handy for smoke runs: --config.num_train_steps=20).
  config.num_train_steps = -1
  config.momentum = 0.9
  config.nesterov = False
  config.weight_decay = 2e-4
  config.bias_lr_multiplier = 2.0
  config.aux_loss_weight = 0.3
  config.label_smoothing = 0.0
  # Polyak averaging: ema <- d * ema + (1 - d) * params after every step, with
  # d = min(ema_decay, (1 + step) / (10 + step)) (train/state.py: ema_decay_at).
  config.ema_decay = 0.9999
  # Average the BatchNorm moving statistics too (TF's Inception training did, with
  # tf.moving_average_variables()); False evaluates the EMA weights with the raw statistics.
  config.ema_batch_stats = True
  config.grad_clip_norm = 0.0  # 0 disables clipping

  config.seed = 0
  config.log_every_steps = 100
  config.eval_every_steps = 10_000  # plus a final evaluation; -1 evaluates only at the end
  config.checkpoint_every_steps = 5_000
  config.keep_checkpoints = 3
  # Exported model or training workdir to initialise from (see inception.import_weights).
  config.init_from = ""
  # Parameter subtrees (top-level names, e.g. "classifier") re-initialised instead of loaded.
  config.init_from_reinit = ()
  # Multi-host: call jax.distributed.initialize(). TPU pods, SLURM and Open MPI are detected;
  # elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (train/host.py).
  config.distributed = False
  # JAX's persistent compilation cache, so a resumed or repeated run skips XLA compilation:
  # 'auto' (~/.cache/googlenet_jax/xla, or under $XDG_CACHE_HOME), 'off', or a directory.
  config.compilation_cache = "auto"
  return config
