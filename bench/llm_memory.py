"""Peak memory and wall time of converting a ~1.1B-parameter Llama, against the checkpoint's size.

    .venv/bin/python bench/llm_memory.py [--layers 22] [--dtype bfloat16] [--workdir /tmp/porttax-llm]

Builds a TinyLlama-1.1B-shaped Hugging Face folder (hidden 2048, 22 layers, 32 heads, 4 KV heads,
intermediate 5632, vocab 32000; random weights from fixed seeds, sharded safetensors with an index;
written tensor by tensor), then runs each conversion in its own process and reads that process's peak
RSS from the kernel (wait4's ru_maxrss, which counts everything the process ever held):

- SavedModel: `porttax convert DIR --to savedmodel --no-parity` (streamed: weights are read one at a
  time into the Keras model, the only copy; see porttax.lazy_weights). Target: peak RSS ≤ 1.5 × the
  checkpoint's size in float32. By default a bf16 checkpoint's weights stay bf16 (porttax.dtype_policy);
  the `savedmodel-fp32` row widens them (`--dtype float32`), the case the target was set for.
- Keras weights: `porttax convert DIR --to keras-weights -o model.weights.h5` (weights-only: each
  tensor read, transformed and written, no model built). Target: peak RSS ≤ the largest tensor
  (float32) + 1 GiB, judged on the writing process; a child process that imports torch and Keras
  learns the layout from a skeleton first, and the row's peak includes it (it is the baseline row).

Peak RSS includes the Python interpreter, torch and TensorFlow themselves; the baseline row (a process
that only imports them) shows that floor, measured in the same run. Parity is a
separate step (`porttax parity DIR out/llm_sm`): it needs the source in memory beside the converted model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINYLLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
             "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
             "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048,
             "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
             "hidden_act": "silu", "attention_bias": False}
SHARD_BYTES = 2 * 1024**3


def tensor_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    shapes = [("model.embed_tokens.weight", (v, h))]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                   (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, h)),
                   (p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                   (p + "mlp.down_proj.weight", (h, i)), (p + "input_layernorm.weight", (h,)),
                   (p + "post_attention_layernorm.weight", (h,))]
    return shapes + [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]


def build_checkpoint(folder: Path, cfg: dict, dtype: str) -> None:
    """Sharded safetensors + index + config.json, one shard in memory at a time."""
    import torch

    from porttax.sources.safetensors_file import write_safetensors

    folder.mkdir(parents=True)
    tdtype = getattr(torch, dtype)
    shapes = tensor_shapes(cfg)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in shapes:
        nbytes = torch.Size(shape).numel() * tdtype.itemsize
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    weight_map = {}
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name, shape in shard:
            gen = torch.Generator().manual_seed(shapes.index((name, shape)))
            if len(shape) == 1:
                tensors[name] = torch.ones(shape, dtype=tdtype)
            else:
                tensors[name] = (torch.randn(shape, generator=gen) * 0.02).to(tdtype)
            weight_map[name] = file
        write_safetensors(tensors, folder / file)
        del tensors
        print(f"  wrote {file}", file=sys.stderr)
    total = sum(torch.Size(s).numel() for _, s in shapes) * tdtype.itemsize
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    (folder / "config.json").write_text(json.dumps(cfg | {"torch_dtype": dtype}, indent=1))


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float, int, dict]:
    """(wall seconds, peak RSS MiB, exit code, its --json report) of one child process. The peak is
    the largest of the process and any child it waited for (wait4 folds those in)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        report = json.loads(out) if out.strip() else {}
    except json.JSONDecodeError:
        report = {}
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, proc.returncode, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=TINYLLAMA["num_hidden_layers"])
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--workdir", default="/tmp/porttax-llm")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint for the next run")
    ap.add_argument("--only", help="comma list of jobs: savedmodel,savedmodel-fp32,keras-weights")
    args = ap.parse_args()

    cfg = TINYLLAMA | {"num_hidden_layers": args.layers}
    work = Path(args.workdir)
    ckpt = work / f"tinyllama-{args.layers}l-{args.dtype}"
    if not (ckpt / "config.json").exists():
        shutil.rmtree(ckpt, ignore_errors=True)
        print(f"building {ckpt} ...", file=sys.stderr)
        t0 = time.perf_counter()
        build_checkpoint(ckpt, cfg, args.dtype)
        print(f"  built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    shapes = tensor_shapes(cfg)
    params = sum(int(math.prod(s)) for _, s in shapes)
    largest = max(int(math.prod(s)) for _, s in shapes) * 4
    on_disk = sum(p.stat().st_size for p in ckpt.glob("*.safetensors"))
    fp32 = params * 4
    mib = 1024**2
    print(f"checkpoint: {params / 1e9:.3f}B parameters, {on_disk / mib:,.0f} MiB on disk ({args.dtype}), "
          f"{fp32 / mib:,.0f} MiB in float32, largest tensor {largest / mib:,.0f} MiB in float32")

    porttax = [sys.executable, "-m", "porttax.cli"]
    jobs = {
        "baseline": ([sys.executable, "-c", "from porttax._frameworks import import_keras, import_tf, import_torch; "
                      "import_torch(); import_tf(); import_keras()"], None),
        "savedmodel": (porttax + ["convert", str(ckpt), "--to", "savedmodel", "-o", str(work / "llm_sm"),
                                  "--no-parity", "--no-latency", "--force", "--json"], 1.5 * fp32),
        # the same, with the weights widened to float32 (the default keeps a bf16 checkpoint's bf16)
        "savedmodel-fp32": (porttax + ["convert", str(ckpt), "--to", "savedmodel", "-o", str(work / "llm_sm"),
                                       "--dtype", "float32", "--no-parity", "--no-latency", "--force", "--json"],
                            1.5 * fp32),
        "keras-weights": (porttax + ["convert", str(ckpt), "--to", "keras-weights",
                                     "-o", str(work / "llm.weights.h5"), "--no-parity", "--no-latency", "--force",
                                     "--json"],
                          largest + 1024**3),
    }
    wanted = ["baseline"] + (args.only.split(",") if args.only
                               else ["savedmodel", "savedmodel-fp32", "keras-weights"])
    print(f"{'job':<15} {'wall s':>8} {'peak RSS MiB':>13} {'target MiB':>11} {'peak / fp32 ckpt':>17}  verdict")
    for name in wanted:
        cmd, target = jobs[name]
        # streamed as every checkpoint of 1 GiB or more is by default; forced so --layers 2 streams too
        wall, peak, rc, report = measure(cmd, env=os.environ | {"PORTTAX_STREAM": "1"})
        own = report.get("porting_tax", {}).get("peak_rss_mb")  # the converting process alone
        judged = own if name == "keras-weights" and own else peak
        verdict = "exit %d" % rc if rc else ("—" if target is None else ("PASS" if judged * mib <= target else "MISS"))
        target_text = f"{target / mib:,.0f}" if target else "—"
        print(f"{name:<15} {wall:>8.1f} {peak:>13,.0f} {target_text:>11} {peak * mib / fp32:>16.2f}×  {verdict}",
              flush=True)
        if name == "keras-weights" and own:
            print(f"{'':<15} the writing process alone: {own:,.0f} MiB (judged); the layout child, which imports "
                  "torch and Keras to convert the skeleton, accounts for the rest", flush=True)
    if not args.keep:
        for p in (work / "llm_sm", work / "llm.weights.h5"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
