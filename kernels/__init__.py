"""Op formulations that are faster on XLA:CPU than XLA's own, and the switch that picks them.

    select.py           `model.kernels`: 'auto' (per platform, at lowering), 'cpu' or 'xla'
    max_pool.py         max pooling with a select_and_scatter-free gradient (CPU only)
    conv1x1.py          1x1 convolutions as matmuls (CPU only)
    batch_norm_relu.py  BatchNorm + ReLU with a two-pass hand-written gradient (all backends)
    lrn.py              Caffe's LRN with a hand-written gradient (all backends)

Each computes the same values as the plain ops (up to float summation order); programs
lowered for GPU or TPU hold none of the CPU-only ones. Why each exists is one paragraph in
its module; what was measured is in benchmarks/README.md ("What made the difference").
The model layers (inception/layers.py) are their only users.
"""
