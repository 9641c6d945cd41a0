"""The GPU run: one command that proves the CUDA path and trains a model in minutes (issue 14).

    python bench/gpu_run.py --stage-data                       # here: copy QQP + tokenizer into gpu_data/
    python bench/gpu_run.py --out $OUT --minutes 4             # on a lent GPU (carry gpu_data)
    python bench/gpu_run.py --device cpu --tiny --out /tmp/r   # the rehearsal CI runs (about a minute)

Stages, each recorded in ``figures.json`` as it ends (a killed run keeps the stages before):

1. ``env``: torch, CUDA, the device and its memory.
2. ``cuda_tests``: ``pytest -m cuda`` (batch-invariant sampling, bf16 against fp32, ``--gpus 1``
   with resume, a GPU-trained model on CPU); they skip where there is no CUDA.
3. ``throughput``: generation lines/s (20 steps, ``-n 10 --mbr``) at the small and base presets
   with random weights, and training tokens/s and model FLOPs utilisation (bf16 on a GPU), with
   and without ``torch.compile``.
4. ``train``: a run of ``--minutes`` with a recipe sized for the device (its step count from the
   measured speed, so that the learning rate decays to 0 on time), then QQP valid (all lines,
   ``-n 10 --mbr``, 20 steps) scored as ``diffuseq evaluate`` scores it.
5. ``model``: the trained model folder (fp16 weights) under ``--out``; the GPU machine returns at
   most 8 files of 16 MB.

Runs from the source tree (``python bench/gpu_run.py``) with torch, typer, rich, tokenizers,
safetensors and huggingface_hub; nltk and platformdirs are not needed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SHARED = ROOT.parent / "shared"
STAGED = ROOT / "gpu_data"  # ignored by git; carried to the GPU machine
BF16_PEAK_FLOPS = 990e12  # H100/H200 dense bf16, by the datasheet (docs/benchmarks.md)


def data_paths() -> dict[str, Path]:
    """QQP train/valid and the embedded model's tokenizer: from ../shared when present, else gpu_data/."""
    base = SHARED / "data" / "QQP" if (SHARED / "data" / "QQP" / "train.jsonl").exists() else STAGED / "QQP"
    return {"train": base / "train.jsonl", "valid": base / "valid.jsonl"}


def stage_data() -> None:
    """Copy what the GPU machine needs (it gets the working tree only) into gpu_data/."""
    (STAGED / "QQP").mkdir(parents=True, exist_ok=True)
    for name in ("train.jsonl", "valid.jsonl"):
        shutil.copy(SHARED / "data" / "QQP" / name, STAGED / "QQP" / name)
    print(f"staged QQP into {STAGED} ({sum(f.stat().st_size for f in STAGED.rglob('*') if f.is_file()) / 1e6:.1f} MB); "
          "carry gpu_data", file=sys.stderr)


class Figures:
    """Every figure of the run, written (atomically) after each stage."""

    def __init__(self, out: Path, settings: dict):
        self.path = out / "figures.json"
        self.data = {"settings": settings, "stages": {}}

    def record(self, stage: str, result: dict) -> None:
        self.data["stages"][stage] = result
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.path)
        print(f"[{stage}] {json.dumps(result)[:600]}", flush=True)


def stage(figures: Figures, name: str, fn, *args):
    """Run one stage; a failure is recorded (with its traceback's end) and the run goes on."""
    t0 = time.perf_counter()
    try:
        result = {"status": "ok", **fn(*args)}
    except Exception as exc:  # noqa: BLE001: a stage's failure must not lose the other stages' figures
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()[-2000:]}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    figures.record(name, result)
    return result


# --- 1. the environment --------------------------------------------------------------------------
def env_stage(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "device": device,
            "python": sys.version.split()[0], "cpus": os.cpu_count()}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(cuda=torch.version.cuda, name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
    return info


# --- 2. the tests that need CUDA -----------------------------------------------------------------
def cuda_tests_stage() -> dict:
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests/test_cuda.py"],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
    if r.returncode not in (0, 5):  # 5: nothing collected/run
        raise RuntimeError("pytest -m cuda failed:\n" + "\n".join(tail))
    return {"returncode": r.returncode, "summary": tail[-1] if tail else ""}


# --- 3. throughput --------------------------------------------------------------------------------
def _sources(n: int) -> list[str]:
    return [json.loads(x)["src"] for x in data_paths()["valid"].read_text().splitlines()[:n]]


def generation_throughput(device: str, preset: str, lines: int, work: Path, precision: str) -> dict:
    import torch

    from diffuseq_cli.checkpoint import load_model_folder
    from diffuseq_cli.generation import GenerateOptions, SamplingConfig, generate_stream
    from helpers_models import build_tiny_model

    folder = build_tiny_model(work / f"gen-{preset}", preset_name=preset, vocab_size=8000, seq_len=64, steps=2000)
    loaded = load_model_folder(folder, device=device)
    batch = 640 if device.startswith("cuda") else 64
    opts = GenerateOptions(num_samples=10, mbr=True, sampling=SamplingConfig(steps=20, batch_size=batch),
                           device=device, precision=precision)
    srcs = _sources(lines)
    list(generate_stream(loaded, srcs[: max(2, lines // 8)], opts))  # warm-up (kernels, allocator)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = sum(1 for _ in generate_stream(loaded, srcs, opts))
    seconds = time.perf_counter() - t0
    return {"preset": preset, "lines": n, "seconds": round(seconds, 2), "lines_per_s": round(n / seconds, 2),
            "parameters": loaded.model.num_parameters()}


def _timed_steps(cfg, device: str, steps: int, compile_model: bool = False) -> tuple:
    """Build the run's trainer, take 3 untimed steps, then time ``steps``: (trainer, seconds, tokens)."""
    import torch

    from diffuseq_cli.distributed import Placement
    from diffuseq_cli.train import Trainer, prepare_run

    shutil.rmtree(cfg.out, ignore_errors=True)
    cfg, tok = prepare_run(cfg, resume=False)
    trainer = Trainer(cfg, tok, Placement(0, 1, torch.device(device)), None)
    if compile_model:
        trainer.ddp = torch.compile(trainer.model)  # the loss calls it; embed/logits stay on the plain module
    for _ in range(3):
        trainer.train_step()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0, tokens = time.perf_counter(), 0
    for _ in range(steps):
        tokens += trainer.train_step()["tokens"]
    sync()
    return trainer, time.perf_counter() - t0, tokens


def training_throughput(device: str, preset: str, batch: int, steps: int, compile_model: bool, work: Path) -> dict:
    from diffuseq_cli.train_config import with_recipe

    cfg = with_recipe("fast", data=str(data_paths()["valid"]), out=str(work / f"tput-{preset}-{batch}-{int(compile_model)}"),
                      preset=preset, batch_size=batch, steps=10**6, device="cuda" if device.startswith("cuda") else "cpu",
                      tokenizer=str(ROOT / "diffuseq_cli" / "models" / "paraphrase" / "tokenizer.json"))
    trainer, seconds, tokens = _timed_steps(cfg, device, steps, compile_model)
    params = trainer.model.num_parameters()
    flops = 6 * params * tokens  # forward + backward of the matrices; attention's share is small at 64 positions
    result = {"preset": preset, "batch": batch, "compile": compile_model, "precision": trainer.precision,
              "steps_per_s": round(steps / seconds, 2), "tokens_per_s": round(tokens / seconds, 1), "parameters": params}
    if device.startswith("cuda"):
        result["mfu"] = round(flops / seconds / BF16_PEAK_FLOPS, 4)
    return result


def throughput_stage(device: str, tiny: bool, work: Path, precision: str) -> dict:
    cuda = device.startswith("cuda")
    presets = ["tiny"] if tiny else ["small", "base"]
    gen = [generation_throughput(device, p, 8 if tiny else 512, work, precision) for p in presets]
    train = []
    for p in presets:
        batch = 8 if tiny else (1024 if p == "small" else 256)
        for comp in ([False, True] if cuda else [False]):
            try:
                train.append(training_throughput(device, p, batch, 3 if tiny else 20, comp, work))
            except Exception as exc:  # noqa: BLE001: torch.compile may be unavailable; keep the rest
                train.append({"preset": p, "compile": comp, "error": f"{type(exc).__name__}: {exc}"[:300]})
    return {"generation": gen, "training": train}


# --- 4. a training run, then QQP valid --------------------------------------------------------------
def recipe_for(device: str, tiny: bool) -> dict:
    """The run's settings: tiny for the rehearsal; on a GPU a larger model at batch 1024 (DiffuSeq-v2's
    QQP run used 850), exact regions and DiffuSeq-v2's absorbing state (docs/training.md)."""
    if tiny:
        return dict(preset="tiny", batch_size=8, lr=1e-3, warmup=2, diffusion_steps=100)
    if device.startswith("cuda"):
        return dict(preset="small", model_overrides={"num_layers": 6, "hidden_size": 512, "num_heads": 8,
                                                     "ffn_size": 2048, "embed_dim": 128},
                    batch_size=1024, lr=1e-3, warmup=300, diffusion_steps=2000)
    return dict(preset="small", batch_size=64, lr=1e-3, warmup=100, diffusion_steps=2000)


def train_stage(device: str, tiny: bool, minutes: float, work: Path, out: Path, lines: int) -> dict:
    import torch

    from diffuseq_cli.checkpoint import load_model_folder, save_model_folder
    from diffuseq_cli.evaluate import evaluate
    from diffuseq_cli.generation import SamplingConfig, generate_texts
    from diffuseq_cli.mbr import mbr_select
    from diffuseq_cli.train import train
    from diffuseq_cli.train_config import with_recipe

    paths = data_paths()
    settings = recipe_for(device, tiny)
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    base = dict(data=str(paths["train"] if not tiny else paths["valid"]), valid=str(paths["valid"]), out=str(run),
                regions="exact", absorbing_kind="v2", device="cuda" if device.startswith("cuda") else "cpu",
                tokenizer=str(ROOT / "diffuseq_cli" / "models" / "paraphrase" / "tokenizer.json"), save_every=10**9,
                keep=1, log_every=50, valid_every=0, seq_len=64)
    # The step count from a short timed probe of the same settings, so the schedule ends on time.
    steps = 20 if tiny else max(100, int(_probe_rate(device, settings, base, work) * minutes * 60 * 0.9))
    cfg = with_recipe("fast", **{**base, **settings, "steps": steps, "max_minutes": minutes * 1.1})
    t0 = time.perf_counter()
    result = train(cfg)
    train_seconds = time.perf_counter() - t0
    loaded = load_model_folder(result.last_checkpoint, device=device)  # saved from here too: the writer moves it to CPU
    pairs = [json.loads(x) for x in paths["valid"].read_text().splitlines() if x.strip()][:lines]
    srcs = [" ".join(p["src"].split()) for p in pairs]
    refs = [" ".join(p["trg"].split()) for p in pairs]
    t0 = time.perf_counter()
    cands = generate_texts(loaded, srcs, 10, SamplingConfig(steps=20, batch_size=640 if device.startswith("cuda") else 64),
                           device=device, precision="bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32")
    gen_seconds = time.perf_counter() - t0
    best = [c[mbr_select(c).index] for c in cands]
    report = evaluate([best], refs, sources=srcs).to_dict()
    folder = out / "model"
    save_model_folder(folder, loaded.config, loaded.model, loaded.tokenizer,
                      (Path(result.last_checkpoint) / "README.md").read_text(), dtype=torch.float16)
    return {"steps": result.step, "train_seconds": round(train_seconds, 1), "recipe": {**settings, "steps": steps},
            "parameters": loaded.model.num_parameters(), "lines": len(pairs), "generate_seconds": round(gen_seconds, 1),
            "mbr10": report["files"][0], "copy_source": report["source"],
            "examples": [{"src": s, "out": b} for s, b in list(zip(srcs, best))[:8]],
            "model_files": {f.name: f.stat().st_size for f in folder.iterdir()}}


def _probe_rate(device: str, settings: dict, base: dict, work: Path) -> float:
    """Steps per second of the run's own settings (a few timed steps of a throw-away run)."""
    from diffuseq_cli.train_config import with_recipe

    cfg = with_recipe("fast", **{**base, **settings, "out": str(work / "rate-probe"), "steps": 10**6})
    _, seconds, _ = _timed_steps(cfg, device, 10)
    return 10 / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    ap.add_argument("--device", default=None, help="cuda (default where present) or cpu")
    ap.add_argument("--tiny", action="store_true", help="the rehearsal: tiny models, a few steps, a few lines")
    ap.add_argument("--minutes", type=float, default=4.0, help="length of the training run")
    ap.add_argument("--lines", type=int, default=2048, help="QQP valid lines scored after training")
    ap.add_argument("--stages", default="env,cuda_tests,throughput,train", help="comma-separated subset")
    ap.add_argument("--stage-data", action="store_true", help="copy QQP into gpu_data/ for the GPU machine, then stop")
    args = ap.parse_args()
    if args.stage_data:
        stage_data()
        return 0
    if args.out is None:
        ap.error("--out DIR is needed (or $OUT)")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU is available")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "diffuseq-gpu-run"
    work.mkdir(parents=True, exist_ok=True)
    lines = min(args.lines, 16) if args.tiny else args.lines
    precision = "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"
    figures = Figures(args.out, {"device": device, "tiny": args.tiny, "minutes": args.minutes, "lines": lines})
    wanted = set(args.stages.split(","))
    failed = 0
    if "env" in wanted:
        failed += stage(figures, "env", env_stage, device)["status"] != "ok"
    if "cuda_tests" in wanted:
        failed += stage(figures, "cuda_tests", cuda_tests_stage)["status"] != "ok"
    if "throughput" in wanted:
        failed += stage(figures, "throughput", throughput_stage, device, args.tiny, work, precision)["status"] != "ok"
    if "train" in wanted:
        failed += stage(figures, "train", train_stage, device, args.tiny, args.minutes, work, args.out, lines)["status"] != "ok"
    print(f"figures: {figures.path}; {failed} stage(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
