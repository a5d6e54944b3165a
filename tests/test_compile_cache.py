"""The persistent compilation cache (jsma_jax.compile_cache): across processes, and across versions.

Each cached run is a fresh Python process (the cache's point is the next process); each
reports how many programs it read from the cache (JAX's ``cache_hits`` event) and
stored, and the x_adv of one attack, so that a cached program is compared bit for bit
with a fresh compilation. The suite itself runs with the cache off (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jsma_jax import compile_cache

ROOT = Path(__file__).resolve().parents[1]

# One attack on a small nonlinear model (pairwise, the paper's rule), its x_adv and the cache events.
WORKER = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax import monitoring
import jsma_jax
from jsma_jax import compile_cache

args = json.loads(sys.argv[1])
if args.get("other_version"):
  real = compile_cache.versions
  compile_cache.versions = lambda: {**real(), "jsma-jax": args["other_version"]}
events = {"hits": 0, "misses": 0}
def on_event(name, **kw):
  if name == "/jax/compilation_cache/cache_hits": events["hits"] += 1
  if name == "/jax/compilation_cache/cache_misses": events["misses"] += 1
monitoring.register_event_listener(on_event)
folder = compile_cache.enable(args["root"]) if args["root"] is not None else None

w1 = jax.random.normal(jax.random.key(0), (16, 12)) / 4
w2 = jax.random.normal(jax.random.key(1), (12, 4))
f = lambda p, x: jnp.tanh(x.reshape(x.shape[0], -1) @ p[0]) @ p[1]
x = jax.random.uniform(jax.random.key(2), (6, 4, 4))
targets = jnp.array([0, 1, 2, 3, 1, 2])
result = jsma_jax.jsma(f, x, targets, params=(w1, w2), max_iter=6)
np.save(args["out"], np.asarray(result.x_adv))
print(json.dumps({**events, "changed": int(result.n_changed.sum()), "folder": None if folder is None else str(folder),
                  "cache_dir": jax.config.jax_compilation_cache_dir}))
"""


def _run(tmp_path: Path, name: str, *, root, env=None, other_version=None) -> tuple[dict, np.ndarray]:
  out = tmp_path / f"{name}.npy"
  args = {"root": None if root is None else str(root), "out": str(out), "other_version": other_version}
  environ = {k: v for k, v in os.environ.items() if k not in (compile_cache.ENV, "JAX_COMPILATION_CACHE_DIR")}
  environ.update(env or {})
  done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(args)], capture_output=True, text=True,
                        cwd=ROOT, env=environ, timeout=600)
  assert done.returncode == 0, done.stderr
  return json.loads(done.stdout.strip().splitlines()[-1]), np.load(out)


def _entries(folder: Path) -> set[str]:
  return {p.name for p in folder.iterdir()} if folder.exists() else set()


@pytest.mark.slow
def test_second_process_reads_the_cache_and_gives_the_same_x_adv(tmp_path):
  fresh, x_fresh = _run(tmp_path, "uncached", root=None)
  assert fresh["hits"] == 0 and fresh["cache_dir"] is None

  first, x_first = _run(tmp_path, "first", root=tmp_path / "cache")
  folder = Path(first["folder"])
  assert folder == compile_cache.folder(tmp_path / "cache")
  assert first["hits"] == 0 and first["misses"] > 0
  stored = _entries(folder)
  assert stored, "the first process stored no program"

  second, x_second = _run(tmp_path, "second", root=tmp_path / "cache")
  assert second["hits"] >= first["misses"] and second["misses"] == 0  # every program read back, none compiled
  assert _entries(folder) == stored
  np.testing.assert_array_equal(x_second, x_fresh)  # the cached program computes what a fresh compile does
  np.testing.assert_array_equal(x_first, x_fresh)
  assert fresh["changed"] > 0  # the attack moved features: the compared x_adv are not the inputs


@pytest.mark.slow
def test_a_folder_of_another_version_is_not_read(tmp_path):
  root = tmp_path / "cache"
  old, x_old = _run(tmp_path, "old", root=root, other_version="0.0.0-old")
  old_folder = Path(old["folder"])
  assert old_folder.name.endswith("_jsma-jax-0.0.0-old") and _entries(old_folder)
  old_entries = _entries(old_folder)

  new, x_new = _run(tmp_path, "new", root=root)
  new_folder = Path(new["folder"])
  assert new_folder != old_folder and new_folder.parent == old_folder.parent
  assert new["hits"] == 0 and new["misses"] > 0  # compiled afresh: nothing read from the old version's folder
  assert _entries(new_folder) and _entries(old_folder) == old_entries  # stored in its own folder only
  np.testing.assert_array_equal(x_new, x_old)

  again, _ = _run(tmp_path, "old_again", root=root, other_version="0.0.0-old")
  assert again["hits"] > 0 and again["misses"] == 0  # the old version still finds its own entries


@pytest.mark.slow
def test_off_by_environment_variable(tmp_path):
  result, _ = _run(tmp_path, "off", root=tmp_path / "cache", env={compile_cache.ENV: "off"})
  assert result["folder"] is None and result["cache_dir"] is None and result["hits"] == 0
  assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_a_folder_the_user_gave_jax_is_kept(tmp_path):
  mine = tmp_path / "mine"
  result, _ = _run(tmp_path, "mine", root=tmp_path / "cache", env={"JAX_COMPILATION_CACHE_DIR": str(mine)})
  assert result["folder"] == str(mine) == result["cache_dir"]
  assert _entries(mine) and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("env, expected", [
    ({"XDG_CACHE_HOME": "/x/cache"}, "/x/cache/jsma-jax"),
    ({compile_cache.ENV: "/y/jc", "XDG_CACHE_HOME": "/x/cache"}, "/y/jc"),
    ({"HOME": "/home/u"}, "/home/u/.cache/jsma-jax"),
], ids=["xdg", "env-folder", "home"])
def test_default_root(monkeypatch, env, expected):
  for name in (compile_cache.ENV, "XDG_CACHE_HOME"):
    monkeypatch.delenv(name, raising=False)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  assert compile_cache.default_root() == Path(expected)


def test_folder_names_every_version():
  v = compile_cache.versions()
  name = compile_cache.folder("/r").name
  assert name == f"jax-{v['jax']}_jaxlib-{v['jaxlib']}_jsma-jax-{v['jsma-jax']}"
  assert all(v.values())


@pytest.mark.parametrize("value", [-1.0, float("nan"), "1", True], ids=["negative", "nan", "string", "bool"])
def test_min_compile_seconds_is_checked_first(value):
  with pytest.raises(ValueError, match="min_compile_seconds"):
    compile_cache.enable("/nonexistent/never-created", min_compile_seconds=value)


CLI = r"""
import json, sys, types
import jax
from jsma_jax_experiments import cli

seen = {}
fake = types.ModuleType("jsma_jax_experiments.fake_command")
fake.main = lambda argv: seen.update(argv=argv)
sys.modules[fake.__name__] = fake
cli.COMMANDS["fake_command"] = ("fake_command", "records its arguments")
status = cli.run("fake_command", sys.argv[1:])
print(json.dumps({"status": status, "argv": seen["argv"], "cache_dir": jax.config.jax_compilation_cache_dir}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("flag", [False, True], ids=["default", "no-compile-cache"])
def test_the_commands_turn_the_cache_on_unless_told(tmp_path, flag):
  environ = {k: v for k, v in os.environ.items() if k not in (compile_cache.ENV, "JAX_COMPILATION_CACHE_DIR")}
  environ["XDG_CACHE_HOME"] = str(tmp_path)
  argv = ["--size", "2"] + (["--no-compile-cache"] if flag else [])
  done = subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True, cwd=ROOT, env=environ,
                        timeout=300)
  assert done.returncode == 0, done.stderr
  out = json.loads(done.stdout.strip().splitlines()[-1])
  assert out["status"] == 0 and out["argv"] == ["--size", "2"]  # the flag is the CLI's, not the command's
  if flag:
    assert out["cache_dir"] is None and not (tmp_path / "jsma-jax").exists()
  else:
    assert Path(out["cache_dir"]).parent == tmp_path / "jsma-jax" and Path(out["cache_dir"]).is_dir()
