"""Beyond one device: the sharded attack (4 virtual CPU devices), lowering for other platforms, resumable datasets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_models
from jax import export

import jsma_jax
from jsma_jax import attack, options

SCRIPT = textwrap.dedent(
    """
    import chex
    chex.set_n_cpu_devices(4)
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    assert jax.device_count() == 4, jax.devices()
    import jsma_jax, toy_models
    from jsma_jax.distributed import jsma_sharded
    params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.mlp_params(5, (5, 6), 5))
    x = jnp.asarray(toy_models.random_inputs(6, 10, (5, 6)), jnp.float32)   # 10: not a multiple of 4
    t = jnp.asarray(np.random.default_rng(7).integers(0, 5, size=10), jnp.int32)
    one = jsma_jax.jsma(toy_models.apply_mlp_relu, x, t, params=params, gamma=0.4, record_trace=True, slots=2)
    many = jsma_sharded(toy_models.apply_mlp_relu, x, t, params=params, gamma=0.4, record_trace=True, slots=2)
    assert len(many.x_adv.sharding.device_set) == 4 or many.x_adv.shape[0] == 10
    for a, b in zip(one, many):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert 0 < int(one.success.sum()) < 10, one.success
    even = jsma_sharded(toy_models.apply_mlp_relu, x[:8], t[:8], params=params, gamma=0.4, slots=2)
    assert even.x_adv.sharding.spec == P("batch") and len(even.x_adv.sharding.device_set) == 4, even.x_adv.sharding
    np.testing.assert_array_equal(np.asarray(even.x_adv), np.asarray(one.x_adv)[:8])
    # jsma_local: over the process's 4 devices, equal to one device
    here = jsma_jax.jsma_local(toy_models.apply_mlp_relu, x, t, params=params, gamma=0.4, record_trace=True, slots=2)
    assert len(here.x_adv.sharding.device_set) == 4 or here.x_adv.shape[0] == 10
    for a, b in zip(one, here):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # attack_dataset runs every chunk over the process's 4 devices
    ds = jsma_jax.attack_dataset(toy_models.apply_mlp_relu, np.asarray(x), np.asarray(t), params=params, gamma=0.4,
                                 record_trace=True, slots=2, chunk_size=8, progress=False)
    for a, b in zip(one, ds):
        np.testing.assert_array_equal(np.asarray(a), b)
    try:
        jsma_sharded(toy_models.apply_mlp_relu, x, t, params=params, gamma=2.0)
    except ValueError as e:
        assert "gamma" in str(e)
    else:
        raise AssertionError("no error")
    print("OK")
    """
)


@pytest.mark.slow
def test_sharded_equals_single_device():
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  here = Path(__file__).parent
  env["PYTHONPATH"] = os.pathsep.join([str(here), str(here.parent), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().endswith("OK")


# ------------------------------------------------------------------ lowering for a platform this machine lacks

# Custom calls a lowered attack may hold on any platform (sharding annotations); a host callback
# (xla_python_cpu_callback, ...) or a CPU-only library call (LAPACK, ...) would be one outside this set.
PORTABLE_CUSTOM_CALLS = {"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape"}
CNN = toy_models.apply_cnn


@pytest.fixture(scope="module")
def cnn():
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.cnn_params(3, 1, 4))
  x = jnp.asarray(toy_models.random_inputs(6, 12, (6, 6, 1)), jnp.float32)
  t = jnp.asarray(np.random.default_rng(7).integers(0, 4, size=12), jnp.int32)
  return params, x, t


def _portable(text: str) -> None:
  calls = set(re.findall(r"custom_call @([\w.]+)", text))
  assert calls <= PORTABLE_CUSTOM_CALLS, calls
  assert "callback" not in text


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_lower_for_a_platform_this_machine_lacks(cnn, platform):
  params, x, t = cnn
  here = jsma_jax.lower(CNN, x, t, params=params, gamma=0.2).as_text()
  there = jsma_jax.lower(CNN, x, t, params=params, gamma=0.2, platforms=(platform,)).as_text()
  _portable(there)
  assert "stablehlo.while" in there
  # the target's defaults: the model's convolutions kept (the loop-friendly rewrite is the CPU's) ...
  assert "stablehlo.convolution" in there and "stablehlo.convolution" not in here
  # ... and its slot count (the CPU's grows with this machine's cores)
  big = jnp.zeros((300, 6, 6, 1)), jnp.zeros(300, jnp.int32)
  plan = attack.prepare(CNN, *big, params, None, None, {"platform": platform}).plan
  assert plan.slots == min(320, options.default_slots(platform)) == 320
  assert attack.prepare(CNN, *big, params, None, None, {}).plan.slots == min(320, options.default_slots("cpu"))


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_export_for_a_platform_this_machine_lacks(cnn, platform):
  params, x, t = cnn
  fn = jax.jit(lambda x, t: jsma_jax.jsma(CNN, x, t, params=params, gamma=0.2, platform=platform))
  exported = export.export(fn, platforms=(platform,))(x, t)
  assert exported.platforms == (platform,)
  text = exported.mlir_module()
  _portable(text)
  assert "stablehlo.convolution" in text


@pytest.mark.slow
def test_multi_platform_export_runs_here_and_equals_jsma(cnn):
  params, x, t = cnn
  fn = jax.jit(lambda x, t: jsma_jax.jsma(CNN, x, t, params=params, gamma=0.2, platform="cuda"))
  exported = export.export(fn, platforms=("cpu", "cuda"))(x, t)
  _portable(exported.mlir_module())
  ran, one = exported.call(x, t), jsma_jax.jsma(CNN, x, t, params=params, gamma=0.2)
  assert 0 < int(one.success.sum()) < 12
  for a, b in zip(ran, one):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_serialized_export_round_trips(cnn):
  pytest.importorskip("flatbuffers")  # jsma-jax[export]
  params, x, t = cnn
  fn = jax.jit(lambda x, t: tuple(jsma_jax.jsma(CNN, x, t, params=params, gamma=0.2, platform="cuda")))
  data = export.export(fn, platforms=("cpu", "cuda"))(x, t).serialize()
  back = export.deserialize(data)
  assert back.platforms == ("cpu", "cuda")
  _same(back.call(x, t), jsma_jax.jsma(CNN, x, t, params=params, gamma=0.2))


def test_platform_arguments_are_checked(cnn):
  params, x, t = cnn
  with pytest.raises(TypeError, match=r"platforms must be a tuple .* platforms=\('cuda',\)"):
    jsma_jax.lower(CNN, x, t, params=params, platforms="cuda")
  with pytest.raises(ValueError, match="platforms must be distinct names"):
    jsma_jax.lower(CNN, x, t, params=params, platforms=("gpu",))
  with pytest.raises(ValueError, match="platform must be one of"):
    jsma_jax.EngineOptions(platform="metal")


# ------------------------------------------------------------------ attack_dataset: resumable chunk files

MLP = toy_models.apply_mlp_relu


@pytest.fixture(scope="module")
def mlp():
  params = jax.tree.map(lambda v: np.asarray(v, np.float32), toy_models.mlp_params(5, (5, 6), 5))
  x = np.asarray(toy_models.random_inputs(6, 23, (5, 6)), np.float32)
  t = np.random.default_rng(7).integers(0, 5, size=23).astype(np.int32)
  return params, x, t


class _Stop(Exception):
  pass


def _same(a, b):
  for u, v in zip(a, b):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.slow
def test_dataset_resumes_from_finished_chunks(mlp, tmp_path):
  params, x, t = mlp
  seen = []

  def stop_after_two(index, loaded):
    seen.append((index, loaded))
    if index == 1:
      raise _Stop()

  with pytest.raises(_Stop):
    jsma_jax.attack_dataset(MLP, x, t, params=params, chunk_size=5, progress=False, gamma=0.4,
                            checkpoint_dir=tmp_path, on_chunk=stop_after_two)
  assert seen == [(0, False), (1, False)]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk-000000.npz", "chunk-000001.npz"]  # nothing aside
  seen.clear()
  resumed = jsma_jax.attack_dataset(MLP, x, t, params=params, chunk_size=5, progress=False, gamma=0.4,
                                    checkpoint_dir=tmp_path, on_chunk=lambda i, loaded: seen.append((i, loaded)))
  assert seen == [(0, True), (1, True), (2, False), (3, False), (4, False)]
  _same(resumed, jsma_jax.jsma(MLP, x, t, params=params, gamma=0.4))


@pytest.mark.slow
def test_dataset_redoes_chunks_made_under_other_settings(mlp, tmp_path):
  params, x, t = mlp
  run = lambda p, **kw: jsma_jax.attack_dataset(MLP, x, t, params=p, chunk_size=8, progress=False,
                                                checkpoint_dir=tmp_path, **kw)
  run(params, gamma=0.4)
  other = jax.tree.map(lambda v: -v, params)  # new weights: the saved chunks are stale
  with pytest.warns(UserWarning, match="3 chunk file"):
    _same(run(other, gamma=0.4), jsma_jax.jsma(MLP, x, t, params=other, gamma=0.4))
  with pytest.warns(UserWarning, match="3 chunk file"):  # another option: stale again
    _same(run(other, gamma=0.3), jsma_jax.jsma(MLP, x, t, params=other, gamma=0.3))
  (tmp_path / "chunk-000001.npz").write_bytes(b"not a chunk")  # a foreign file is not trusted either
  with pytest.warns(UserWarning, match="1 chunk file"):
    _same(run(other, gamma=0.3), jsma_jax.jsma(MLP, x, t, params=other, gamma=0.3))


def test_dataset_arguments_are_checked(mlp):
  params, x, t = mlp
  with pytest.raises(ValueError, match="collect must be one of"):
    jsma_jax.attack_dataset(MLP, x, t, params=params, collect="process1")


CLI_DEVICES = textwrap.dedent(
    """
    from experiments.cli import one_cpu_device_per_core
    import jax
    from jsma_jax.options import cpu_cores
    print(one_cpu_device_per_core(), jax.local_device_count(), cpu_cores())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("env,expect", [({}, "cores"), ({"JAX_NUM_CPU_DEVICES": "1"}, "1"),
                                        ({"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}, "3")])
def test_cli_splits_the_cpu_into_one_device_per_core_unless_told(env, expect):
  """``jsma-jax`` commands run over one XLA CPU device per core; a count the user set is kept."""
  here = Path(__file__).parent
  base = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  run_env = {**base, **env, "JAX_PLATFORMS": "cpu",
             "PYTHONPATH": os.pathsep.join([str(here.parent), base.get("PYTHONPATH", "")])}
  proc = subprocess.run([sys.executable, "-c", CLI_DEVICES], env=run_env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  chosen, devices, cores = proc.stdout.split()[-3:]
  if expect == "cores":
    assert chosen == devices == cores, proc.stdout
  else:
    assert chosen == "None" and devices == expect, proc.stdout
