"""tf.data + TFDS input pipeline: sources, training augmentation, evaluation crops, to-JAX.

The trainer's interface:

    data_config = input_pipeline.default_data_config()      # the config's `data` section
    train = input_pipeline.create_train_dataset(data_config, batch_size, start_step=step)
    evals = input_pipeline.create_eval_dataset(data_config, batch_size)
    mesh = runtime.mesh.create_data_mesh()
    for batch in input_pipeline.prefetch_to_mesh(train.as_numpy_iterator(), mesh): ...
"""

from runtime import lazy

# name -> the module that defines it, imported on first use, so `import input_pipeline` (e.g. by
# a config file, for default_data_config) costs no TensorFlow import.
_EXPORTS = {
    "create_eval_dataset": "input_pipeline.pipeline",
    "create_train_dataset": "input_pipeline.pipeline",
    "default_data_config": "input_pipeline.config",
    "num_classes": "input_pipeline.pipeline",
    "num_examples": "input_pipeline.pipeline",
    "per_host_batch_size": "input_pipeline.sharding",
    "prefetch_to_mesh": "input_pipeline.to_jax",
    "validate_data_config": "input_pipeline.config",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS)
