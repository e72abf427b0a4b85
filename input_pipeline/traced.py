"""tf.data map functions traced as written, without AutoGraph's rewrite.

`Dataset.map` runs AutoGraph over the function it traces, and over everything it calls,
rewriting Python control flow on tensors into graph control flow. The pipeline's functions
branch only on Python values (config fields, static shapes) and call tf.switch_case or
tf.cond themselves where a tensor decides, so the rewrite changes nothing in the graph, but
it is slow: 2.8 of the 3.7 s it took to build the digits training pipeline (measured with
cProfile, TensorFlow 2.21), paid again by every process of every run. A function written
with Python control flow on tensors fails to trace here, with TensorFlow's error naming the
tensor used as a Python bool, instead of silently taking one branch.
"""

import tensorflow as tf

as_written = tf.autograph.experimental.do_not_convert
