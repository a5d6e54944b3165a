"""jsma_jax.torch: PyTorch modules converted to JAX, checked against torch itself.

Every layer kind: logits and input gradients (a random cotangent's VJP) within float32
tolerance of torch's autograd. Errors: training mode, unconvertible layers (named), wrong
layout. The paper's LeNet through the bridge gives the same ``x_adv`` as the JAX-native
model of the same weights, and as AdverTorch where it is installed.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import jsma_jax  # noqa: E402
from jsma_jax.torch import from_torch, params_of  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export's own deprecations


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
  """``module`` in eval mode with seeded weights in ``+-1/sqrt(fan_in)`` and non-trivial BatchNorm statistics."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, tensor in module.state_dict().items():
      if not tensor.is_floating_point():
        continue
      u = torch.rand(tensor.shape, generator=gen)
      if name.endswith("running_var"):
        tensor.copy_(0.5 + u)
      elif name.endswith("running_mean"):
        tensor.copy_(u - 0.5)
      else:
        tensor.copy_((2 * u - 1) / (tensor[0].numel() if tensor.ndim > 1 else 1) ** 0.5)
  return module.eval()


class PaperLeNet(nn.Module):
  """The paper's LeNet (Papernot et al. 2016, Table 1's MNIST model) in NCHW."""

  def __init__(self, activation=torch.tanh):
    super().__init__()
    self.act = activation
    self.conv1, self.conv2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
    self.fc1, self.fc2 = nn.Linear(800, 500), nn.Linear(500, 10)

  def forward(self, x):
    x = F.max_pool2d(self.act(self.conv1(x)), 2)
    x = F.max_pool2d(self.act(self.conv2(x)), 2)
    return self.fc2(self.act(self.fc1(x.flatten(1))))


class CifarCNN(nn.Module):
  """CIFAR-sized: padded and strided convolutions, BatchNorm (eval), average pool, dropout."""

  def __init__(self):
    super().__init__()
    self.features = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AvgPool2d(2), nn.Dropout(0.5))
    self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))

  def forward(self, x):
    return self.head(self.features(x))


class BasicBlock(nn.Module):
  """ResNet's basic block with a strided 1x1 projection shortcut."""

  def __init__(self, cin=8, cout=16, stride=2):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

  def forward(self, x):
    return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class SmallResNet(nn.Module):
  def __init__(self):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    self.layer = BasicBlock()
    self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 10)

  def forward(self, x):
    return self.fc(self.pool(self.layer(self.stem(x))).flatten(1))


class Head(nn.Module):
  """``body`` then a flatten and a linear layer to 5 classes (for layers that keep a map)."""

  def __init__(self, body, features):
    super().__init__()
    self.body, self.fc = body, nn.Linear(features, 5)

  def forward(self, x):
    return self.fc(self.body(x).flatten(1))


class Lambda(nn.Module):
  def __init__(self, fn):
    super().__init__()
    self.fn = fn

  def forward(self, x):
    return self.fn(x)


def _head(shape, *layers):
  body = nn.Sequential(*layers)
  with torch.no_grad():
    features = body.eval()(torch.zeros(1, *shape)).numel()
  return Head(body, features)


# (id, model factory, one example's shape)
COVERAGE = [
    ("paper-lenet-tanh", lambda: PaperLeNet(), (1, 28, 28)),
    ("paper-lenet-relu", lambda: PaperLeNet(F.relu), (1, 28, 28)),
    ("cifar-cnn-batchnorm-dropout", CifarCNN, (3, 32, 32)),
    ("resnet-block", SmallResNet, (3, 16, 16)),
    ("conv-strided-padded-dilated", lambda: _head((3, 13, 11), nn.Conv2d(3, 4, 3, stride=2, padding=2),
                                                   nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=2)),
     (3, 13, 11)),
    ("conv-grouped-depthwise", lambda: _head((4, 9, 9), nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 8, 3, groups=8)),
     (4, 9, 9)),
    ("conv-padding-same", lambda: _head((2, 9, 8), nn.Conv2d(2, 3, 4, padding="same")), (2, 9, 8)),
    ("conv-same-pad-asymmetric", lambda: _head((3, 10, 10), Lambda(lambda x: F.pad(x, (0, 1, 0, 1))),
                                               nn.Conv2d(3, 4, 3, stride=2)), (3, 10, 10)),
    ("conv-transpose", lambda: _head((4, 5, 5), nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                                                   groups=2)), (4, 5, 5)),
    ("conv1d", lambda: _head((3, 20), nn.Conv1d(3, 4, 5, stride=2, padding=1), nn.MaxPool1d(2)), (3, 20)),
    ("maxpool-padded-ceil", lambda: _head((2, 11, 11), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
     (2, 11, 11)),
    ("maxpool-dilated", lambda: _head((2, 12, 12), nn.MaxPool2d(2, stride=2, dilation=2)), (2, 12, 12)),
    ("avgpool-padded-include-pad", lambda: _head((2, 9, 9), nn.AvgPool2d(3, stride=2, padding=1)), (2, 9, 9)),
    ("avgpool-exclude-pad-ceil", lambda: _head((2, 10, 10), nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                                                         count_include_pad=False)), (2, 10, 10)),
    ("avgpool-divisor", lambda: _head((2, 8, 8), nn.AvgPool2d(2, divisor_override=3)), (2, 8, 8)),
    ("adaptive-avgpool-uneven", lambda: _head((2, 7, 9), nn.AdaptiveAvgPool2d((3, 4))), (2, 7, 9)),
    ("dropout-eval", lambda: _head((2, 6, 6), nn.Dropout(0.5), nn.Dropout2d(0.3), nn.AlphaDropout(0.2)), (2, 6, 6)),
    ("norms-layer-group", lambda: _head((4, 6, 6), nn.GroupNorm(2, 4), nn.LayerNorm([4, 6, 6])), (4, 6, 6)),
    ("activations", lambda: _head((12,), nn.Linear(12, 12), nn.GELU(), nn.ELU(), nn.LeakyReLU(0.1), nn.Sigmoid(),
                                  nn.Linear(12, 12), nn.Softplus(), nn.Hardtanh(), nn.SiLU(), nn.LogSoftmax(1)),
     (12,)),
]


@pytest.mark.slow
@pytest.mark.parametrize("factory, shape", [c[1:] for c in COVERAGE], ids=[c[0] for c in COVERAGE])
def test_logits_and_input_gradients_match_torch(factory, shape):
  torch.manual_seed(0)
  module = _seeded(factory())
  x = np.random.default_rng(1).uniform(size=(3, *shape)).astype(np.float32)
  apply_fn, params = from_torch(module, torch.from_numpy(x[:1]))
  cot = np.random.default_rng(2).standard_normal((3, 5 if isinstance(module, Head) else 10)).astype(np.float32)

  xt = torch.from_numpy(x).requires_grad_(True)
  want = module(xt)
  (want * torch.from_numpy(cot)).sum().backward()
  # under jit, as the attack traces it: a batch (vmapped) and each example alone (the attack's path)
  vjp = jax.jit(lambda v, c: (lambda out, back: (out, back(c)[0]))(*jax.vjp(lambda u: apply_fn(params, u), v)))
  got, grad = vjp(jnp.asarray(x), jnp.asarray(cot))
  alone = [vjp(jnp.asarray(x[i:i + 1]), jnp.asarray(cot[i:i + 1])) for i in range(len(x))]

  want, wgrad = want.detach().numpy(), xt.grad.numpy()
  scale, gscale = max(1.0, float(np.abs(want).max())), max(1e-3, float(np.abs(wgrad).max()))
  for logits, g in [(got, grad), (np.concatenate([a[0] for a in alone]), np.concatenate([a[1] for a in alone]))]:
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-5, atol=2e-5 * scale)
    np.testing.assert_allclose(np.asarray(g), wgrad, rtol=1e-4, atol=2e-5 * gscale)


def test_unsupported_layer_is_named():
  module = _head((2, 4, 4), nn.Conv2d(2, 2, 1), Lambda(lambda x: torch.sort(x, -1).values)).eval()
  with pytest.raises(ValueError, match=r"does not convert.*\n  - aten\.sort\.default: layer 'body\.1' "
                                       r"\((tests\.)?test_torch_bridge\.Lambda\) at test_torch_bridge\.py:\d+"):
    from_torch(module, torch.zeros(1, 2, 4, 4))


def test_training_mode_is_refused_before_export():
  module = CifarCNN()  # a fresh module is in training mode
  with pytest.raises(ValueError, match=r"module must be in eval mode.*call module\.eval\(\)"):
    from_torch(module, torch.zeros(1, 3, 32, 32))
  sneaky = _head((2, 4, 4), Lambda(lambda x: F.dropout(x, 0.5, training=True))).eval()
  with pytest.raises(ValueError, match=r"runs in training mode.*\n  - aten\.native_dropout"):
    from_torch(sneaky, torch.zeros(1, 2, 4, 4))


def test_bad_arguments_are_named():
  module = _seeded(PaperLeNet())
  with pytest.raises(TypeError, match=r"module must be a torch.nn.Module"):
    from_torch(lambda x: x, torch.zeros(1, 1, 28, 28))
  with pytest.raises(TypeError, match="example_input must be a floating-point tensor"):
    from_torch(module, torch.zeros(1, 1, 28, 28, dtype=torch.int64))
  with pytest.raises(ValueError, match=r"example_input must be a batch \[B >= 1, \*features\]"):
    from_torch(module, torch.zeros(28))
  apply_fn, params = from_torch(module, np.zeros((2, 1, 28, 28), np.float32))  # NumPy works too
  with pytest.raises(ValueError, match=r"x: the module was exported for examples of shape \[1, 28, 28\].*NCHW"):
    apply_fn(params, jnp.zeros((2, 28, 28, 1)))  # NHWC
  with pytest.raises(ValueError, match=r"params is missing \['conv1.weight'\]"):
    apply_fn({k: v for k, v in params.items() if k != "conv1.weight"}, jnp.zeros((2, 1, 28, 28)))


@pytest.mark.slow
def test_new_weights_do_not_recompile_and_are_used():
  module = _seeded(PaperLeNet())
  x = jnp.asarray(np.random.default_rng(3).uniform(size=(4, 1, 28, 28)), jnp.float32)
  t = jnp.array([1, 2, 3, 4], jnp.int32)
  apply_fn, params = from_torch(module, x)
  jsma_jax.jsma(apply_fn, x, t, params=params, gamma=0.05)
  before = jsma_jax.cache_size()
  _seeded(module, seed=7)  # retrained, in place: same shapes
  new = params_of(module)
  second = jsma_jax.jsma(apply_fn, x, t, params=new, gamma=0.05)
  assert jsma_jax.cache_size() == before
  fresh_fn, fresh = from_torch(module, x)  # a new conversion of the new weights: the same attack
  third = jsma_jax.jsma(fresh_fn, x, t, params=fresh, gamma=0.05)
  np.testing.assert_array_equal(np.asarray(second.x_adv), np.asarray(third.x_adv))
  np.testing.assert_allclose(np.asarray(apply_fn(new, x)), module(torch.from_numpy(np.asarray(x))).detach().numpy(),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_exported_program_round_trip(tmp_path):
  module = _seeded(CifarCNN())
  x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
  batch = torch.export.Dim("batch", min=1)
  torch.export.save(torch.export.export(module, (x,), dynamic_shapes={"x": {0: batch}}), tmp_path / "cnn.pt2")
  apply_fn, params = from_torch(torch.export.load(tmp_path / "cnn.pt2"), x)
  np.testing.assert_allclose(np.asarray(apply_fn(params, jnp.asarray(x.numpy()))), module(x).detach().numpy(),
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="exported for a batch of 2; export it for one example"):
    from_torch(torch.export.export(module, (x,)), x)


def test_the_core_never_imports_torch():
  root = Path(jsma_jax.__file__).parent
  for path in root.rglob("*.py"):  # the operator table (_aten/) included
    if path == root / "torch.py":
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
          [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      assert not any(n == "torch" or n.startswith("torch.") or n == "jsma_jax.torch" for n in names), path.name
  code = "import jsma_jax, sys; assert 'torch' not in sys.modules and 'jsma_jax.torch' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- same attack, same answer


def _paper_lenet_twin():
  """The shipped paper LeNet (NNX, NHWC) and its PyTorch twin (NCHW) with the same weights."""
  models = pytest.importorskip("jsma_jax.models")
  model, _ = models.load_paper_lenet()
  w = models.lenet_numpy_weights(model)
  twin = PaperLeNet(torch.tanh if str(w["activation"]) == "tanh" else F.relu)
  fc1 = w["fc1.kernel"].reshape(4, 4, 50, 500).transpose(2, 0, 1, 3).reshape(800, 500)  # (h, w, c) -> (c, h, w) rows
  state = {"conv1.weight": w["conv1.kernel"].transpose(3, 2, 0, 1), "conv1.bias": w["conv1.bias"],
           "conv2.weight": w["conv2.kernel"].transpose(3, 2, 0, 1), "conv2.bias": w["conv2.bias"],
           "fc1.weight": fc1.T, "fc1.bias": w["fc1.bias"], "fc2.weight": w["fc2.kernel"].T, "fc2.bias": w["fc2.bias"]}
  twin.load_state_dict({k: torch.tensor(np.ascontiguousarray(v, np.float32)) for k, v in state.items()})
  return model, twin.eval(), w


@pytest.fixture(scope="module")
def mnist_attacks():
  """27 attacks: 3 embedded MNIST test digits, each towards its 9 other classes (NHWC)."""
  models = pytest.importorskip("jsma_jax.models")
  x, y = models.load_mnist("embedded", split="test")
  pick = np.array([0, 100, 200])  # three different digits
  e = jsma_jax.all_other_targets(jnp.asarray(x[pick]), jnp.asarray(y[pick]), 10)
  return np.asarray(e.x), np.asarray(e.targets)


@pytest.mark.slow
def test_same_attack_same_answer_as_the_jax_native_lenet(mnist_attacks):
  from jsma_jax.models import as_logits_fn

  model, twin, _ = _paper_lenet_twin()
  x, t = mnist_attacks
  native_fn, native_params = as_logits_fn(model)
  native = jsma_jax.jsma(native_fn, jnp.asarray(x), jnp.asarray(t), params=native_params)
  x_nchw = x.transpose(0, 3, 1, 2)
  apply_fn, params = from_torch(twin, x_nchw)
  bridge = jsma_jax.jsma(apply_fn, jnp.asarray(x_nchw), jnp.asarray(t), params=params)
  same = np.all(np.asarray(bridge.x_adv).transpose(0, 2, 3, 1) == np.asarray(native.x_adv), axis=(1, 2, 3))
  assert same.sum() >= len(x) - 1, f"x_adv identical on {same.sum()}/{len(x)} attacks"
  assert np.asarray(bridge.success).mean() > 0.8


@pytest.mark.slow
def test_same_answer_as_advertorch(mnist_attacks):
  if importlib.util.find_spec("advertorch") is None:  # peers imports it, with its shims for torch 2.13
    pytest.skip("AdverTorch is not installed (benchmarks/setup_env.sh installs it)")
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
  import peers

  _, twin, weights = _paper_lenet_twin()
  x, t = mnist_attacks
  x, t = x[:3], t[:3]  # AdverTorch is slow (about 20 s per attack on a loaded 2-core CPU)
  ours = peers.run_advertorch(weights, x, t, batch_size=9, warmup=0)
  apply_fn, params = from_torch(twin, x.transpose(0, 3, 1, 2))
  bridge = jsma_jax.jsma(apply_fn, jnp.asarray(x.transpose(0, 3, 1, 2)), jnp.asarray(t), params=params,
                         initial_domain="all")
  same = np.all(np.asarray(bridge.x_adv).transpose(0, 2, 3, 1) == ours["x_adv"], axis=(1, 2, 3))
  assert same.sum() >= len(x) - 1, f"x_adv identical to AdverTorch's on {same.sum()}/{len(x)} attacks"


@pytest.mark.slow
def test_command_line_attacks_a_torch_export_file(tmp_path):
  """``jsma-jax attack --checkpoint model.pt2``: a saved PyTorch program on the NHWC digits."""
  pytest.importorskip("jsma_jax.models")
  from experiments.commands import attack as attack_cli

  module = _seeded(_head((1, 28, 28), nn.Conv2d(1, 4, 5, stride=3), nn.ReLU()))
  batch = torch.export.Dim("batch", min=1)
  program = torch.export.export(module, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
  torch.export.save(program, tmp_path / "tiny.pt2")
  out = tmp_path / "run"
  res = attack_cli.main(["--checkpoint", str(tmp_path / "tiny.pt2"), "--out", str(out), "--sources", "2",
                         "--include-misclassified", "--targets", "random", "--max-iter", "3"])
  assert res["summary"]["n"] == 2 and res["dataset"]["num_classes"] == 5
  assert res["model"]["arch"] == "torch.export program tiny.pt2 (NCHW)"
  saved = np.load(out / "attacks.npz")
  assert saved["x_adv"].shape == (2, 28, 28, 1) and (saved["n_changed"] <= 6).all()


@pytest.mark.slow
def test_docstring_examples():
  import doctest

  import jsma_jax.torch as bridge

  failed, attempted = doctest.testmod(bridge, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert attempted >= 8 and failed == 0
