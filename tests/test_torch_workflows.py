"""jsma_jax.torch: one refusal listing everything, the real causes, and the documented workflows.

* a module with several operators the bridge lacks gets ONE error naming each, with the
  layers and source lines that use it, before anything compiles;
* the causes are named as they are: an input changed in place, batch statistics, training
  mode; ``InstanceNorm`` in eval mode converts;
* tuple and dict outputs: the logits by the documented rule, or ``output=``;
* ``params_of`` carries every buffer the program reads (bool buffers too);
* ``jsma`` takes torch tensors as ``x``, ``targets``, ``mask`` and bounds;
* ``.pt2`` files: errors name the file, and a shape mismatch both shapes.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import jsma_jax  # noqa: E402
from jsma_jax.torch import from_pt2, from_torch, params_of  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export's own deprecations


class Sorts(nn.Module):
  """Two operators the bridge does not convert (sort, topk), one of them in two places."""

  def __init__(self):
    super().__init__()
    self.fc = nn.Linear(6, 6)

  def forward(self, x):
    a = torch.sort(self.fc(x), dim=1).values  # sort, first use
    b = torch.topk(x, 3, dim=1).values  # topk
    c = torch.sort(x * 2, dim=1).values  # sort, second use
    return torch.cat([a, b, c], 1)


def test_one_refusal_lists_every_missing_operator_with_its_places(monkeypatch):
  compiled = []
  monkeypatch.setattr("jax.jit", lambda *a, **k: compiled.append(a) or pytest.fail("compiled before refusing"))
  with pytest.raises(ValueError) as caught:
    from_torch(Sorts().eval(), torch.zeros(1, 6))
  message = str(caught.value)
  assert "nothing was compiled" in message and "2 ATen operators" in message
  assert "aten.sort.default" in message and "aten.topk.default" in message
  sort_line = next(line for line in message.splitlines() if "aten.sort.default" in line)
  assert sort_line.count("test_torch_workflows.py:") == 2  # both places, each with its source line
  assert "`a = torch.sort(self.fc(x), dim=1).values" in sort_line
  assert "the forward of" in sort_line and "Sorts" in sort_line
  assert not compiled


def test_unconvertible_arguments_are_listed_with_the_missing_operators():
  class Both(nn.Module):
    def forward(self, x):
      return torch.topk(x, 2, dim=1).values + x[:, x[0] > 0].sum()  # topk; a bool mask index

  with pytest.raises(ValueError) as caught:
    from_torch(Both().eval(), torch.ones(1, 4))
  assert "aten.topk.default" in str(caught.value)


def test_an_input_changed_in_place_is_named():
  class InPlace(nn.Module):
    def forward(self, x):
      x.mul_(2)
      return x.flatten(1)

  with pytest.raises(ValueError, match=r"forward changes its input in place .*x\.mul_\(2\).*x = x \* 2"):
    from_torch(InPlace().eval(), torch.ones(1, 3))


def test_batch_statistics_are_named_and_instance_norm_converts():
  bn = nn.Sequential(nn.BatchNorm1d(3, track_running_stats=False), nn.Flatten()).eval()
  with pytest.raises(ValueError, match=r"batch statistics: BatchNorm with track_running_stats=False"):
    from_torch(bn, torch.rand(1, 3, 4))
  inorm = nn.Sequential(nn.InstanceNorm2d(3), nn.Flatten()).eval()
  x = torch.rand(2, 3, 4, 4)
  apply_fn, params = from_torch(inorm, x)
  np.testing.assert_allclose(np.asarray(apply_fn(params, jnp.asarray(x.numpy()))), inorm(x).numpy(), atol=1e-5)


def test_training_mode_inside_eval_is_listed():
  class Sneaky(nn.Module):
    def forward(self, x):
      return F.dropout(x, 0.5, training=True).flatten(1)

  with pytest.raises(ValueError, match=r"runs in training mode.*\n  - aten\.native_dropout\.default: the forward of"):
    from_torch(Sneaky().eval(), torch.ones(1, 3))


class Several(nn.Module):
  def __init__(self, kind):
    super().__init__()
    self.fc, self.kind = nn.Linear(4, 3), kind

  def forward(self, x):
    logits = self.fc(x)
    if self.kind == "tuple":
      return logits, x.sum(1)
    if self.kind == "dict":
      return {"features": x * 2, "logits": logits}
    return {"a": logits, "b": x}


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_tuple_and_dict_outputs_give_the_logits_by_rule(kind):
  module = Several(kind).eval()
  x = torch.rand(3, 4)
  apply_fn, params = from_torch(module, x)
  np.testing.assert_allclose(np.asarray(apply_fn(params, jnp.asarray(x.numpy()))),
                             module.fc(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_output_argument_picks_the_logits():
  module = Several("other").eval()
  with pytest.raises(ValueError, match=r"dict with keys \['a', 'b'\], which has no entry 'logits'; pass output="):
    from_torch(module, torch.rand(1, 4))
  apply_fn, params = from_torch(module, torch.rand(1, 4), output="a")
  assert apply_fn(params, jnp.ones((2, 4))).shape == (2, 3)
  with pytest.raises(ValueError, match=r"output: the module returned a tuple of 2, which has no entry 5"):
    from_torch(Several("tuple").eval(), torch.rand(1, 4), output=5)
  apply_fn, params = from_torch(Several("tuple").eval(), torch.rand(1, 4), output=1)
  assert apply_fn(params, jnp.ones((2, 4))).shape == (2,)


class Gated(nn.Module):
  """A bool buffer the forward reads (a fixed mask of features), and an int buffer."""

  def __init__(self):
    super().__init__()
    self.fc = nn.Linear(8, 3)
    self.register_buffer("keep", torch.tensor([True, False, True, True, False, True, True, True]))
    self.register_buffer("shift", torch.tensor([1, 0, 2, 0, 0, 1, 0, 0]))

  def forward(self, x):
    return self.fc(torch.where(self.keep, x, 0.0) + self.shift)


def test_params_of_carries_every_buffer_the_program_reads():
  module = Gated().eval()
  x = np.random.default_rng(0).uniform(size=(2, 8)).astype(np.float32)
  apply_fn, params = from_torch(module, torch.from_numpy(x))
  assert {"keep", "shift"} <= set(params) and set(apply_fn.param_names) <= set(params_of(module))
  result = jsma_jax.jsma(apply_fn, x, np.array([0, 2]), params=params_of(module), max_iter=2)
  assert result.x_adv.shape == (2, 8)
  with torch.no_grad():
    module.keep[1] = True  # a new mask, as data: the same program reads it
  np.testing.assert_allclose(np.asarray(apply_fn(params_of(module), jnp.asarray(x))),
                             module(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_jsma_takes_torch_tensors():
  module = nn.Sequential(nn.Linear(6, 4)).eval()
  x = torch.rand(3, 6, generator=torch.Generator().manual_seed(0))
  apply_fn, params = from_torch(module, x)
  t, mask = torch.tensor([0, 1, 3]), torch.tensor([True, True, False, True, True, True])
  lo, hi = torch.zeros(6), torch.ones(6)
  ours = jsma_jax.jsma(apply_fn, x, t, params=params, mask=mask, clip_min=lo, clip_max=hi, max_iter=3)
  numpy = jsma_jax.jsma(apply_fn, x.numpy(), t.numpy(), params=params, mask=mask.numpy(), clip_min=lo.numpy(),
                        clip_max=hi.numpy(), max_iter=3)
  np.testing.assert_array_equal(np.asarray(ours.x_adv), np.asarray(numpy.x_adv))
  with pytest.raises(TypeError, match=r"x is a torch tensor that NumPy cannot hold "
                                      r".*x\.detach\(\)\.cpu\(\)\.float\(\)\.numpy\(\)"):
    jsma_jax.jsma(apply_fn, x.bfloat16(), t, params=params)


def test_pt2_errors_name_the_file_and_the_shapes(tmp_path):
  damaged = tmp_path / "damaged.pt2"
  damaged.write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(ValueError, match=r"checkpoint .*damaged\.pt2 is not a readable torch\.export program"):
    from_pt2(damaged, np.zeros((1, 1, 28, 28), np.float32))
  with pytest.raises(FileNotFoundError, match=r"missing\.pt2: no such file"):
    from_pt2(tmp_path / "missing.pt2", np.zeros((1, 1, 28, 28), np.float32))
  module = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(4))
  module(torch.zeros(1, 3, 32, 32))
  batch = torch.export.Dim("batch", min=1)
  torch.export.save(torch.export.export(module.eval(), (torch.zeros(2, 3, 32, 32),),
                                        dynamic_shapes={"input": {0: batch}}),
                    tmp_path / "cifar.pt2")
  with pytest.raises(ValueError, match=r"cifar\.pt2: example_input: the program takes examples of shape \[3, 32, 32\] "
                                       r"\(batch axis excluded\), the data's are \[1, 28, 28\]"):
    from_pt2(tmp_path / "cifar.pt2", np.zeros((1, 1, 28, 28), np.float32))
  apply_fn, params = from_pt2(tmp_path / "cifar.pt2", np.zeros((1, 3, 32, 32), np.float32))
  assert apply_fn(params, jnp.zeros((2, 3, 32, 32))).shape == (2, 4)


def test_command_line_names_a_damaged_checkpoint(tmp_path):
  pytest.importorskip("jsma_jax.models")
  from experiments.commands import attack as attack_cli
  from experiments.common.cli_args import UsageError

  damaged = tmp_path / "damaged.pt2"
  damaged.write_bytes(b"not a zip at all")
  with pytest.raises(UsageError, match=r"damaged\.pt2 is not a readable torch\.export program"):
    attack_cli.main(["--checkpoint", str(damaged), "--out", str(tmp_path / "run"), "--sources", "1"])


def test_a_missing_operator_and_an_unconvertible_argument_in_one_refusal():
  class Both(nn.Module):
    def forward(self, x):
      y = torch.topk(x, 2, dim=1).values  # an operator the bridge lacks
      z = torch.zeros(x.shape[0], 2).scatter_reduce(1, torch.tensor([[0, 1, 1, 0]]).expand(x.shape[0], 4), x,
                                                    reduce="mean")  # an argument it refuses
      return torch.cat([y, z], 1)

  with pytest.raises(ValueError) as caught:
    from_torch(Both().eval(), torch.ones(1, 4))
  message = str(caught.value)
  assert "aten.topk.default" in message
  assert "operators with arguments the bridge does not convert" in message
  assert "scatter_reduce with reduce='mean'" in message
