"""Which op formulations a training step partitioned over a mesh gets (kernels/select.py)."""

from detection.multibox_model import MultiBox
from inception import create_model
from kernels.select import model_for_mesh


def test_partitioned_steps_get_xla_ops_unless_a_choice_was_made():
  model = create_model("bn", width=0.125, num_classes=5)
  assert model.kernels == "auto"
  assert model_for_mesh(model, 8).kernels == "xla"
  assert model_for_mesh(model, 1) is model  # one device: 'auto' still decides per platform
  chosen = model.clone(kernels="cpu")
  assert model_for_mesh(chosen, 8).kernels == "cpu"  # an explicit choice is kept


def test_a_trunk_inside_another_model_gets_the_same_choice():
  multibox = MultiBox(trunk=create_model("bn", width=0.125, num_classes=1), num_priors=4)
  on_mesh = model_for_mesh(multibox, 8)
  assert on_mesh.trunk.kernels == "xla" and on_mesh.num_priors == 4
  assert model_for_mesh(multibox, 1) is multibox
