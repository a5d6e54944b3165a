"""Copy a trained LeNet into the package as the shipped paper LeNet (maintainers only).

Usage::

  python -m experiments.scripts.ship --checkpoint runs/factorial/models/f_glorot_adam_b128_e6 \\
      --name glorot_adam_b128_e6 --data-dir ../shared/data/mnist

Loads the checkpoint, measures it on the official test set (IDX files) and on the 1,000
embedded test digits, and writes ``jsma_jax/models/_data/lenets/NAME/`` (weights and
metadata only, no ``weights.npz``, to keep the package small), which
:func:`jsma_jax.models.load_paper_lenet` reads. ``NAME`` must be one of
``jsma_jax.models.checkpoint.SHIPPED_LENETS`` (add a new name there first). A factorial
candidate's recipe (named ``f_...`` in the factorial's own files) is recorded under ``NAME``.
"""

from __future__ import annotations

import argparse
import os

# Flax (jsma_jax.models): imported inside the functions that use them (heavy, the
# [experiments] extra), so that importing this module, and its command's --help, need the core only.


def main(argv=None) -> dict:
  """Writes the shipped checkpoint; returns its metadata."""
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--checkpoint", required=True, help="the trained checkpoint to ship")
  p.add_argument("--data-dir", required=True, help="folder of the MNIST IDX files")
  p.add_argument("--name", required=True, help="the shipped name (one of SHIPPED_LENETS)")
  args = p.parse_args(argv)
  import jsma_jax.models as models
  from jsma_jax.models import checkpoint as ckpt

  model, meta = models.load_checkpoint(args.checkpoint)
  apply_fn, params = models.as_logits_fn(model)
  test = models.load_mnist("idx", data_dir=args.data_dir, split="test")
  embedded = models.load_mnist("embedded", split="test")
  out = dict(meta)
  for key in ("model", "software", "format_version", "created", "weights_sha256"):
    out.pop(key, None)
  out.update(test_accuracy=models.evaluate(apply_fn, test, params=params),
             embedded_test_accuracy=models.evaluate(apply_fn, embedded, params=params),
             shipped_from=os.path.normpath(args.checkpoint))
  # a factorial candidate (f_<recipe>) ships under its shipped name: one name for the recipe in the
  # package, the docs and every report made from the shipped model
  for holder in (out, out.get("history", {})):
    if str(holder.get("recipe", {}).get("name", "")).startswith("f_"):
      holder["recipe"] = {**holder["recipe"], "name": args.name}
  if args.name not in ckpt.SHIPPED_LENETS:
    p.error(f"--name must be one of {ckpt.SHIPPED_LENETS}, got {args.name!r}")
  target = os.path.join(os.path.dirname(ckpt.__file__), "_data", "lenets", args.name)
  ckpt.save_checkpoint(target, model, out, numpy_weights=False)
  size = sum(os.path.getsize(os.path.join(target, f)) for f in os.listdir(target))
  print(f"wrote {target} ({size / 1e6:.2f} MB): test accuracy {out['test_accuracy']:.4f}, "
        f"embedded test digits {out['embedded_test_accuracy']:.4f}")
  return out


if __name__ == "__main__":
  main()
