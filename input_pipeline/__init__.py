"""tf.data + TFDS input pipeline: sources, training augmentation, evaluation crops, to-JAX.

The trainer's interface:

    data_config = input_pipeline.default_data_config()      # the config's `data` section
    train = input_pipeline.create_train_dataset(data_config, batch_size, start_step=step)
    evals = input_pipeline.create_eval_dataset(data_config, batch_size)
    mesh = jax.make_mesh((jax.device_count(),), ('data',))
    for batch in input_pipeline.prefetch_to_mesh(train.as_numpy_iterator(), mesh): ...
"""
import importlib

# name -> the module that defines it. Imported on first use (PEP 562), so `import
# input_pipeline` (e.g. by a config file, for default_data_config) costs no TensorFlow import.
_EXPORTS = {
    'batch_sharding': 'input_pipeline.to_jax',
    'create_eval_dataset': 'input_pipeline.pipeline',
    'create_train_dataset': 'input_pipeline.pipeline',
    'default_data_config': 'input_pipeline.config',
    'num_classes': 'input_pipeline.pipeline',
    'num_examples': 'input_pipeline.pipeline',
    'per_host_batch_size': 'input_pipeline.sharding',
    'prefetch_to_mesh': 'input_pipeline.to_jax',
    'validate_data_config': 'input_pipeline.config',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(_EXPORTS[name]), name)
  globals()[name] = value  # later lookups skip this function
  return value


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
