"""tf.data + TFDS input pipeline: sources, training augmentation, evaluation crops, to-JAX.

The trainer's interface:

    data_config = input_pipeline.default_data_config()      # the config's `data` section
    train = input_pipeline.create_train_dataset(data_config, batch_size, start_step=step)
    evals = input_pipeline.create_eval_dataset(data_config, batch_size)
    mesh = jax.make_mesh((jax.device_count(),), ('data',))
    for batch in input_pipeline.prefetch_to_mesh(train.as_numpy_iterator(), mesh): ...
"""
from input_pipeline.config import default_data_config
from input_pipeline.config import validate_data_config
from input_pipeline.pipeline import create_eval_dataset
from input_pipeline.pipeline import create_train_dataset
from input_pipeline.pipeline import num_classes
from input_pipeline.pipeline import num_examples
from input_pipeline.sharding import per_host_batch_size
from input_pipeline.to_jax import batch_sharding
from input_pipeline.to_jax import prefetch_to_mesh

__all__ = [
    'batch_sharding',
    'create_eval_dataset',
    'create_train_dataset',
    'default_data_config',
    'num_classes',
    'num_examples',
    'per_host_batch_size',
    'prefetch_to_mesh',
    'validate_data_config',
]
