"""PyTorch models for jsma-jax: ``from_torch(module, example_input) -> (apply_fn, params)``.

``apply_fn(params, x)`` is a pure JAX function of the module's weights ``params`` (a dict
keyed by ``state_dict`` names) and a batch ``x`` in the module's own layout (NCHW for
images), returning the logits; :func:`jsma_jax.jsma` attacks it like any JAX model, in one
compiled program, with the core's loop-friendly rewrite (:mod:`jsma_jax.rewrite`). New
weights of the same shapes (:func:`params_of` after training) never recompile, because
the attack takes the weights as data.

How it works: ``torch.export`` traces the module (in eval mode, on one example) to an
``ExportedProgram``; ``run_decompositions()`` lowers it to PyTorch's core ATen operator
set; :mod:`jsma_jax._aten` gives each operator a JAX implementation written from its
definition. The program is exported for one example and a batch is its ``jax.vmap``, as
the core evaluates every model (examples are independent in eval mode). ``from_torch``
checks before returning: the module is in eval mode, every operator converts (otherwise
an error names the layer, its class, the operator and the source line), and the JAX
logits equal the module's on ``example_input`` within float32 tolerance.

Why this converter (measured with torch 2.13.0 CPU and jax 0.10.2; docs/pytorch.md has the numbers; on
the paper's LeNet, a CIFAR-sized CNN with BatchNorm, average pooling and dropout, and a
ResNet block, all in eval mode; max |logit difference| to torch):

==================  =======================================================================
torchax 0.0.13      does not import with torch 2.13 (``aten.prod.dim_Dimname`` was
                    removed); its fix is not released. Declares no torch requirement.
torch2jax 0.1.0     LeNet fails (``F.max_pool2d`` without an explicit stride:
                    ``TypeError``); the CNN fails (``avg_pool2d`` not implemented); the
                    ResNet block matches (3e-8). Intercepts torch functions one by one
                    (``__torch_function__``), so each missing function is a user's bug.
jaxonnxruntime      matches on all three (6e-8, 1e-7, 3e-8), but only through the legacy
0.3.0 (ONNX)        TorchScript exporter (``dynamo=False``, deprecated in torch 2.x); the
                    weights become ONNX initializers baked into the graph (new weights:
                    a new export); pins onnx 1.12 in its extra; adds onnx and protobuf.
torch.export +      no dependency beyond torch; ``torch.export`` and the core ATen opset
own ATen table      are PyTorch's stable export path; ~45 operators cover the common
(chosen)            layers; exact control of pooling corner cases (``ceil_mode``,
                    ``count_include_pad``, the first-maximum gradient of max pools) and of
                    the error for what does not convert.
==================  =======================================================================

Supported layers (each tested against torch, logits and input gradients, in
``tests/test_torch_bridge.py`` and ``tests/test_torch_ops.py``): ``Conv1d/2d/3d`` (stride,
padding, dilation, groups), ``ConvTranspose2d``, ``Linear``, ``BatchNorm`` / ``LayerNorm`` /
``GroupNorm`` / ``InstanceNorm`` (eval), ``MaxPool`` (padding, dilation, ``ceil_mode``),
``AvgPool`` (``count_include_pad``, ``ceil_mode``, ``divisor_override``), ``AdaptiveAvgPool``,
``Upsample`` (nearest, nearest-exact, (bi/tri)linear), ``Dropout`` (eval: removed), the usual
activations, ``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` (with masks),
``chunk`` / ``split`` / ``unbind``, advanced indexing, ``gather`` / ``index_select`` /
``scatter`` / in-place slice writes, ``arange``, ``fmod``, ``max`` / ``min`` with ``dim``,
channels-last layouts (``as_strided`` read from the input's memory). Which of torchvision
0.28's classification models convert: ``benchmarks/results/torch_coverage.md``.
``jsma_jax._aten.supported()`` lists the operators.

A module that does not convert is refused before anything compiles, in one error that lists
every operator (and argument) it lacks with the layers and source lines that use it.
Outputs: a tensor is the logits; of a dict or named tuple, the entry ``"logits"``; of a tuple
or list, the first entry; ``output=`` picks another.

Example:
  >>> import jsma_jax, torch
  >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 3))
  >>> apply_fn, params = from_torch(model.eval(), torch.zeros(1, 1, 4, 4))
  >>> result = jsma_jax.jsma(apply_fn, np.full((2, 1, 4, 4), 0.5, np.float32), np.array([0, 2]), params=params)
  >>> result.x_adv.shape  # NCHW, as the module takes it
  (2, 1, 4, 4)
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

try:
  import torch
  import torch.export
except ImportError as _error:  # pragma: no cover - only without the extra
  raise ImportError("jsma_jax.torch needs PyTorch: pip install 'jsma-jax[torch]' (on a CPU-only machine "
                    "install torch's CPU build first, e.g. pip install torch==2.13.0)") from _error

from jsma_jax import _aten, _validate

_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
           torch.bfloat16: jnp.bfloat16, torch.int64: np.int64, torch.int32: np.int32, torch.bool: np.bool_}


class _Ref(NamedTuple):
  """A value computed by an earlier node of the graph."""

  name: str


class _Step(NamedTuple):
  name: str
  op: str
  args: tuple
  kwargs: dict
  where: str  # the layer and source line, for errors
  meta: Any  # what torch's trace says the node returns: (shape, dtype), a list of those, or None


class TorchModel:
  """``apply_fn(params, x) -> logits [B, N]``: a converted PyTorch module (see :func:`from_torch`).

  Attributes:
    feature_shape: the shape of one example in the module's layout, e.g. ``(1, 28, 28)``.
    param_names: the ``state_dict`` names that ``params`` must hold.
    output_index: which of the module's outputs (flattened, as ``torch.utils._pytree``
      flattens them) is the logits.
  """

  def __init__(self, inputs: list, steps: list, output: str, constants: dict, feature_shape: tuple,
               output_index: int = 0):
    self._inputs, self._steps, self._output, self._constants = inputs, steps, output, constants
    self.feature_shape, self.output_index = feature_shape, output_index
    self.param_names = tuple(target for kind, _, target in inputs if kind == "param")

  def __repr__(self) -> str:
    return f"TorchModel(x: [B, {', '.join(map(str, self.feature_shape))}], {len(self.param_names)} weights)"

  def __call__(self, params: Mapping[str, Any], x: jax.Array) -> jax.Array:
    """Logits ``[B, N]`` of ``x`` ``[B, *feature_shape]`` with the module's weights ``params``."""
    if tuple(x.shape[1:]) != self.feature_shape or x.ndim != len(self.feature_shape) + 1:
      raise ValueError(f"x: the module was exported for examples of shape {list(self.feature_shape)} (its own "
                       f"layout, e.g. NCHW), got x of shape {list(x.shape)}; transpose NHWC images with "
                       "x.transpose(0, 3, 1, 2)")
    missing = [n for n in self.param_names if n not in params]
    if missing:
      raise ValueError(f"params is missing {missing[:5]}; pass the dict from from_torch or params_of(module)")
    weights = {n: params[n] for n in self.param_names}
    if x.shape[0] == 1:
      return self._run(weights, x)
    return jax.vmap(lambda xi: self._run(weights, xi[None])[0])(x)

  def _run(self, weights: dict, x: jax.Array, failures: list | None = None) -> jax.Array:
    """The graph on one example.

    With ``failures`` (the check before compiling), a step that fails is recorded there and
    stood in for by zeros of its traced shape; a step that is already refused (its operator
    is not converted) or reads a stood-in value is stood in for without a record.
    """
    env, stood_in = {}, set()
    for kind, name, target in self._inputs:
      env[name] = x if kind == "input" else weights[target] if kind == "param" else self._constants[target]
    resolve = lambda v: env[v.name] if isinstance(v, _Ref) else (
        type(v)(resolve(u) for u in v) if isinstance(v, (list, tuple)) else v)
    for step in self._steps:
      if failures is not None and (step.op not in _aten.OPS or _refs((step.args, step.kwargs)) & stood_in):
        env[step.name] = _stand_in(step.meta)
        stood_in.add(step.name)
        continue
      try:
        env[step.name] = _aten.OPS[step.op](*resolve(step.args), **{k: resolve(v) for k, v in step.kwargs.items()})
      except Exception as error:
        if failures is None:
          raise ValueError(f"jsma_jax.torch could not convert {step.where}: {step.op}: "
                           f"{type(error).__name__}: {error}") from error
        failures.append((step, error))
        env[step.name] = _stand_in(step.meta)
        stood_in.add(step.name)
    return env[self._output]

  def _problems(self, weights: dict) -> list[tuple[_Step, Exception]]:
    """Every step that fails on an example, found by tracing the graph once without compiling it."""
    failures = []
    jax.eval_shape(lambda w, x: self._run(w, x, failures), weights,
                   jax.ShapeDtypeStruct((1, *self.feature_shape), jnp.float32))
    return failures


def _refs(value: Any) -> set[str]:
  if isinstance(value, _Ref):
    return {value.name}
  if isinstance(value, (list, tuple)):
    return set().union(*map(_refs, value)) if value else set()
  if isinstance(value, dict):
    return _refs(tuple(value.values()))
  return set()


def _stand_in(meta: Any) -> Any:
  """Zeros of the shape torch's trace gives a node, so that the steps after a failed one still run."""
  if isinstance(meta, list):
    return [_stand_in(m) for m in meta]
  if meta is None:
    return None
  shape, dtype = meta
  return jnp.zeros(shape, dtype)


def _meta(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return [_meta(v) for v in value]
  if isinstance(value, torch.Tensor) and value.dtype in _DTYPES:
    return tuple(s if isinstance(s, int) else 1 for s in value.shape), _dtype(value.dtype)
  return None


def _dtype(dtype: torch.dtype) -> Any:
  """Torch's dtype as the one JAX computes in (64-bit integers are 32-bit unless jax_enable_x64)."""
  return jax.dtypes.canonicalize_dtype(_DTYPES[dtype])


@contextlib.contextmanager
def _quiet_torch():
  """Silences torch 2.13's own deprecation notice about its pytree internals during an export."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    yield


def _layer(node) -> tuple[str, str]:
  """``(path, class)`` of the innermost layer that made ``node`` (``("", "")`` when none)."""
  stack = node.meta.get("nn_module_stack") or {}
  stack = [v for v in stack.values() if not str(v[0]).startswith("_empty_nn_module_stack")]
  if not stack:
    return "", ""
  path, cls = stack[-1]
  return path, cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"


def _where(node) -> str:
  """``layer 'features.3' (torch.nn.Upsample) at model.py:12 `source```, from the node's metadata."""
  path, cls = _layer(node)
  if cls:
    layer = f"layer {path!r} ({cls})" if path else f"the forward of {cls}"
  else:
    layer = "the model's forward"
  trace = [line.strip() for line in (node.meta.get("stack_trace") or "").strip().splitlines()]
  files = [i for i, line in enumerate(trace) if line.startswith("File ")]
  if files:
    i = files[-1]
    place = re.match(r'File "(.*)", line (\d+)', trace[i])  # File "path", line N, in forward
    source = f"{os.path.basename(place[1])}:{place[2]}" if place else trace[i]
    layer += f" at {source}" + (f" `{trace[i + 1]}`" if i + 1 < len(trace) else "")
  return layer


def _arg(value: Any) -> Any:
  """A node's argument with torch objects replaced: nodes by references, dtypes by NumPy's."""
  if isinstance(value, torch.fx.Node):
    return _Ref(value.name)
  if isinstance(value, (list, tuple)):
    return type(value)(_arg(v) for v in value)
  if isinstance(value, torch.dtype):
    if value not in _DTYPES:
      raise _aten.Unsupported(f"dtype {value}")
    return _dtype(value)
  if isinstance(value, (torch.device, torch.layout, torch.memory_format)):
    return None
  return value


def _array(tensor: torch.Tensor) -> jax.Array:
  tensor = tensor.detach().cpu()
  if tensor.dtype == torch.bfloat16:
    return jnp.asarray(tensor.float().numpy(), jnp.bfloat16)
  return jnp.asarray(tensor.numpy())


# Instance normalisation lowers to batch norm over the example's own statistics; any other layer
# that does (BatchNorm with track_running_stats=False) mixes the examples of a batch.
_OWN_STATISTICS = "aten._native_batch_norm_legit.no_stats"


def _listing(problems: dict[str, list[str]], limit: int = 3) -> str:
  lines = []
  for what, places in problems.items():
    unique = list(dict.fromkeys(places))
    shown = "; ".join(unique[:limit]) + (f"; and {len(unique) - limit} more" if len(unique) > limit else "")
    lines.append(f"  - {what}: {shown}")
  return "\n".join(lines)


def _output_index(program: torch.export.ExportedProgram, n: int, output: int | str | None) -> int:
  """Which of the program's ``n`` flat outputs holds the logits: the rule of :func:`from_torch`'s ``output``."""
  tree = torch.utils._pytree.tree_unflatten(list(range(n)), program.call_spec.out_spec)
  describe = lambda t: type(t).__name__ + (f" with keys {list(t)}" if isinstance(t, Mapping) else
                                           f" of {len(t)}" if isinstance(t, (list, tuple)) else "")
  if output is None:
    if isinstance(tree, int):
      return tree
    if isinstance(tree, Mapping):
      output = "logits"
    elif isinstance(tree, (list, tuple)) and hasattr(tree, "logits"):  # a named tuple
      tree = tree._asdict() if hasattr(tree, "_asdict") else tree
      output = "logits"
    elif isinstance(tree, (list, tuple)) and tree:
      output = 0
    else:
      raise ValueError(f"module returned a {describe(tree)}; pass output= (an index or key) to say which is the logits")
  try:
    picked = tree[output] if not hasattr(tree, "_asdict") or isinstance(output, int) else tree._asdict()[output]
  except (KeyError, IndexError, TypeError):
    raise ValueError(f"output: the module returned a {describe(tree)}, which has no entry {output!r}; pass output= "
                     "as an index of the tuple or a key of the dict that holds the logits") from None
  if not isinstance(picked, int):
    raise ValueError(f"output: the module's entry {output!r} is a {describe(picked)}, not one tensor of logits")
  return picked


def _convert(program: torch.export.ExportedProgram, feature_shape: tuple, output: int | str | None) -> TorchModel:
  """The ``TorchModel`` of a core-ATen ``program``; raises one error listing everything that does not convert."""
  specs = {s.arg.name: s for s in program.graph_signature.input_specs}
  inputs, steps, constants, output_name = [], [], {}, None
  missing, training, arguments = {}, {}, {}  # problem -> places
  for node in program.graph.nodes:
    if node.op == "placeholder":
      spec = specs[node.name]
      if not node.users and spec.kind.name != "USER_INPUT":  # e.g. BatchNorm's num_batches_tracked
        continue
      kind = spec.kind.name
      if kind == "USER_INPUT":
        inputs.append(("input", node.name, None))
      elif kind in ("PARAMETER", "BUFFER") and spec.target in program.state_dict:
        inputs.append(("param", node.name, spec.target))
      elif kind in ("BUFFER", "CONSTANT_TENSOR"):
        inputs.append(("constant", node.name, spec.target))
        constants[spec.target] = _array(program.constants[spec.target])
      else:
        raise ValueError(f"module: the exported program has an input of kind {kind} ({spec.target}), "
                         "which jsma_jax.torch does not convert")
    elif node.op == "call_function":
      op, where = str(node.target), _where(node)
      if op in _aten.IGNORED:
        continue
      refused = _Step(node.name, "refused", (), {}, where, _meta(node.meta.get("val")))  # stands in when checking
      if op == _OWN_STATISTICS and "InstanceNorm" not in _layer(node)[1]:
        arguments.setdefault(f"{op} (batch statistics: BatchNorm with track_running_stats=False mixes the "
                             "examples of a batch; keep running statistics)", []).append(where)
        steps.append(refused)
        continue
      if op in _aten.TRAINING_OPS and op != _OWN_STATISTICS:
        training.setdefault(op, []).append(where)
        steps.append(refused)
        continue
      if op not in _aten.OPS:
        missing.setdefault(op, []).append(where)
        steps.append(refused)
        continue
      try:
        args, kwargs = _arg(tuple(node.args)), {k: _arg(v) for k, v in node.kwargs.items()}
      except _aten.Unsupported as error:
        arguments.setdefault(f"{op} ({error})", []).append(where)
        steps.append(refused)
        continue
      if op.startswith("aten.as_strided"):  # reads memory: give it its input's layout in the trace
        val = node.args[0].meta.get("val")
        if isinstance(val, torch.Tensor) and all(isinstance(s, int) for s in (*val.stride(), val.storage_offset())):
          kwargs["input_layout"] = (tuple(val.stride()), val.storage_offset())
      steps.append(_Step(node.name, op, args, kwargs, where, _meta(node.meta.get("val"))))
    elif node.op == "output":
      outs = program.graph_signature.output_specs
      for spec, value in zip(outs, node.args[0]):
        if spec.kind.name == "USER_INPUT_MUTATION":
          raise ValueError(f"module: its forward changes its input in place ({_where(value)}); the attack "
                           f"differentiates the module at its input, so write the new value to a new tensor "
                           f"(e.g. x = x * 2 instead of x.mul_(2))")
        if spec.kind.name != "USER_OUTPUT":
          raise ValueError(f"module: its forward updates {spec.kind.name.lower().replace('_', ' ')} "
                           f"{spec.target!r} ({_where(value)}); the attack needs a forward that only "
                           "computes the logits: in eval mode BatchNorm keeps its statistics, so move "
                           "other updates out of forward")
      user = [value for spec, value in zip(outs, node.args[0]) if spec.kind.name == "USER_OUTPUT"]
      picked_index = _output_index(program, len(user), output)
      picked = user[picked_index]
      if not isinstance(picked, torch.fx.Node):
        raise ValueError(f"module must return a tensor of logits [B, N]; the chosen output is {picked!r}")
      output_name = picked.name
  if sum(kind == "input" for kind, _, _ in inputs) != 1:
    raise ValueError("module must take one input tensor (the batch x); use a wrapper module for others")
  model = TorchModel(inputs, steps, output_name, constants, feature_shape, picked_index)
  # every converted operator tried on the traced shapes (the refused ones stood in for), without compiling
  weights = {n: jax.ShapeDtypeStruct(v.shape, _dtype(v.dtype)) for n, v in program.state_dict.items()
             if n in model.param_names}
  for step, error in model._problems(weights):
    arguments.setdefault(f"{step.op} ({error})", []).append(step.where)
  if missing or training or arguments:
    parts = ["module: jsma_jax.torch cannot convert this module (nothing was compiled):"]
    if training:
      parts.append("it runs in training mode; call module.eval() before from_torch or torch.export, and use "
                   "F.dropout(x, training=self.training):\n" + _listing(training))
    if missing:
      parts.append(f"it uses {len(missing)} ATen operator{'s' if len(missing) > 1 else ''} that the bridge "
                   f"does not convert (supported_operators() lists the {len(_aten.supported())} it does):\n"
                   + _listing(missing))
    if arguments:
      parts.append("operators with arguments the bridge does not convert:\n" + _listing(arguments))
    raise ValueError("\n".join(parts))
  return model


def supported_operators() -> list[str]:
  """The core ATen operators the bridge converts (a module converts when its program uses only these)."""
  return _aten.supported()


def params_of(module: torch.nn.Module | torch.export.ExportedProgram) -> dict[str, jax.Array]:
  """The module's current weights and buffers as JAX arrays, keyed by ``state_dict`` names."""
  state = module.state_dict if isinstance(module, torch.export.ExportedProgram) else module.state_dict()
  return {name: _array(t) for name, t in state.items()}


def from_torch(module: torch.nn.Module | torch.export.ExportedProgram, example_input: Any, *,
               output: int | str | None = None, check: bool = True) -> tuple[TorchModel, dict[str, jax.Array]]:
  """A PyTorch module as a pure JAX function of its weights: ``(apply_fn, params)``.

  Args:
    module: a ``torch.nn.Module`` in eval mode returning logits ``[B, N]``, or a
      ``torch.export.ExportedProgram`` of one (e.g. ``torch.export.load("model.pt2")``)
      exported for one example or with a dynamic batch.
    example_input: a batch ``[B >= 1, *features]`` in the module's layout (NCHW for images);
      only its first example's shape and values are used.
    output: which of the module's outputs is the logits, where it returns several: an index
      of a tuple or a key of a dict. By default a tensor is the logits; of a dict (or a named
      tuple), the entry ``"logits"``; of a tuple or list, the first entry.
    check: compare the converted logits with the module's on ``example_input[:1]``.

  Returns:
    ``apply_fn`` (a :class:`TorchModel`, ``(params, x [B, *features]) -> logits [B, N]``)
    and ``params`` (``dict`` of JAX arrays keyed by ``state_dict`` names).

  Raises:
    ValueError: the module is in training mode, changes its input in place, does not
      convert (one message lists every operator that does not, with the layers and source
      lines that use it), or ``torch.export`` fails on the module.

  Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    >>> apply_fn, params = from_torch(model, torch.zeros(1, 2, 2))
    >>> sorted(params), apply_fn(params, jnp.zeros((5, 2, 2))).shape
    (['1.bias', '1.weight'], (5, 3))
  """
  exported = isinstance(module, torch.export.ExportedProgram)
  if not exported and not isinstance(module, torch.nn.Module):
    raise TypeError(f"module must be a torch.nn.Module or a torch.export.ExportedProgram, got {type(module).__name__}")
  if not exported:
    _validate.check_eval_mode("module", [name for name, m in module.named_modules() if m.training])
  x = example_input if isinstance(example_input, torch.Tensor) else torch.as_tensor(np.asarray(example_input))
  _validate.check_example_input("example_input", tuple(x.shape), x.is_floating_point(), x.dtype)
  x1 = x[:1].detach().cpu()
  if exported:
    program = module
    given = next(s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT")
    batch = program.graph.find_nodes(op="placeholder", target=given.arg.name)[0].meta["val"].shape[0]
    if isinstance(batch, int) and batch != 1:
      raise ValueError(f"module: the program was exported for a batch of {batch}; export it for one example "
                       "or with a dynamic batch (dynamic_shapes={'x': {0: torch.export.Dim('batch')}})")
    takes = program.graph.find_nodes(op="placeholder", target=given.arg.name)[0].meta["val"].shape[1:]
    if len(takes) != x1.ndim - 1 or any(isinstance(t, int) and t != n for t, n in zip(takes, x1.shape[1:])):
      raise ValueError(f"example_input: the program takes examples of shape {[_size(t) for t in takes]} "
                       f"(batch axis excluded), the data's are {list(x1.shape[1:])}; give it data of the shape "
                       "it was exported for (e.g. NCHW, the same image size and channels)")
  else:
    try:
      with _quiet_torch():
        program = torch.export.export(module, (x1,), strict=False)
    except Exception as error:  # the user's module: any exception, explained
      first = (str(error).strip().splitlines() or [""])[0]
      raise ValueError(f"module: torch.export.export(module, (example_input[:1],)) failed: "
                       f"{type(error).__name__}: {first}. The bridge converts what torch.export can trace "
                       "(no data-dependent Python control flow)") from error
  reference = program.module() if exported else module  # what the conversion is checked against
  with _quiet_torch():
    program = program.run_decompositions()
  apply_fn = _convert(program, tuple(x1.shape[1:]), output)
  params = {n: _array(program.state_dict[n]) for n in apply_fn.param_names}
  if check:
    with torch.no_grad():
      want = reference(x1.to(next(iter(program.state_dict.values()), x1).device))
    got = np.asarray(jax.jit(apply_fn)(params, _array(x1)))
    want = torch.utils._pytree.tree_flatten(want)[0][apply_fn.output_index]
    want = want.detach().cpu().float().numpy() if isinstance(want, torch.Tensor) else None
    if want is None or want.shape != got.shape:
      raise ValueError(f"module must return logits [B, N]; on example_input[:1] it returned "
                       f"{None if want is None else want.shape}, the conversion {got.shape}")
    scale = max(1.0, float(np.abs(want).max()))
    if not np.allclose(got, want, rtol=1e-4, atol=1e-5 * scale):
      raise ValueError(f"jsma_jax.torch: the converted model's logits differ from the module's by "
                       f"{float(np.abs(got - want).max()):.3g} on example_input[:1]; please report this model")
  return apply_fn, params


def _size(n: Any) -> Any:
  return n if isinstance(n, int) else str(n)


def from_pt2(path: str | os.PathLike, example_input: Any, *, output: int | str | None = None,
             check: bool = True) -> tuple[TorchModel, dict[str, jax.Array]]:
  """:func:`from_torch` of a file saved by ``torch.export.save`` (``.pt2``); every error names the file.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: the file is not a readable ``torch.export`` program (damaged, or another
      format), its program takes examples of another shape than ``example_input``'s, or
      it does not convert (see :func:`from_torch`).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint {path}: no such file")
  try:
    with _quiet_torch():
      program = torch.export.load(path)
  except Exception as error:  # a damaged zip, another format: torch's many exceptions
    first = (str(error).strip().splitlines() or [""])[0]
    raise ValueError(f"checkpoint {path} is not a readable torch.export program ({type(error).__name__}: "
                     f"{first}); save one with torch.export.save(torch.export.export(model.eval(), (x,)), "
                     "path)") from error
  try:
    return from_torch(program, example_input, output=output, check=check)
  except ValueError as error:
    raise ValueError(f"checkpoint {path}: {error}") from error
