"""The GPU run: one command that proves the CUDA path and trains a model in minutes (issues 14, 19).

    python bench/gpu_run.py --stage-data                       # here: build the data into gpu_data/
    python bench/gpu_run.py --out $OUT --minutes 4 --budget 480 # on a lent GPU (carry gpu_data)
    python bench/gpu_run.py --device cpu --tiny --out /tmp/r   # the rehearsal CI runs (about a minute)

Stages, the most valuable first, each recorded in ``figures.json`` as it ends (a killed run keeps
the stages before):

1. ``env``: torch, CUDA, the device and its memory.
2. ``train``: a run of ``--minutes`` that continues the embedded model (``--init``, so the result
   keeps its size and CPU speed) on every paraphrase pair we have (QQP and MRPC train, both
   directions, MRPC's last 300 pairs held out: scripts/paraphrase_data.py), its step count from
   the measured speed so that the learning rate decays to 0 on time. The model folder (fp16, the
   embedded model's decoding defaults) and the training log go under ``--out``.
3. ``score``: the trained model as saved and the embedded one, side by side, ``-n 10 --mbr`` with
   the folder's decoding defaults, on QQP valid and MRPC valid: BLEU, iBLEU, copies, repeats and
   the share of statements turned into questions, as ``diffuseq evaluate`` scores them.
4. ``cuda_tests``: ``pytest -m cuda`` (batch-invariant sampling, bf16 against fp32, ``--gpus 1``
   with resume, a GPU-trained model on CPU); they skip where there is no CUDA, and on CUDA the
   stage fails unless every one of them ran and passed.
5. ``throughput``: generation lines/s (``-n 10 --mbr``: ddim over 20 steps, dpm++ over the embedded
   model's default steps, and that through ``generate --gpus 1``) at the small and base presets
   with random weights, and training tokens/s and model FLOPs utilisation (bf16 on a GPU), with
   and without ``torch.compile`` (the timed batches are first run untimed, so that no compile
   for a new batch length lands in the timing).

``--budget`` skips stages 4 and 5 when too little time is left. The GPU machine returns at most
8 files of 16 MB. Runs from the source tree (``python bench/gpu_run.py``) with torch, typer, rich,
tokenizers, safetensors and huggingface_hub; nltk and platformdirs are not needed.
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
sys.path.insert(0, str(ROOT / "scripts"))

SHARED = ROOT.parent / "shared"
STAGED = ROOT / "gpu_data"  # ignored by git; carried to the GPU machine
EMBEDDED = ROOT / "diffuseq_cli" / "models" / "paraphrase"
BF16_PEAK_FLOPS = 990e12  # H100/H200 dense bf16, by the datasheet (docs/benchmarks.md)


def data_paths(work: Path | None = None) -> dict:
    """QQP valid, MRPC valid and the training file of every pair (scripts/paraphrase_data.py): staged
    in gpu_data/ (the GPU machine), else built from ../shared into ``work``."""
    staged = STAGED / "paraphrase"
    if not (staged / "train.jsonl").exists():
        staged = Path(work or Path(os.environ.get("TMPDIR", "/tmp")) / "diffuseq-gpu-run") / "paraphrase"
        if not (staged / "counts.json").exists():
            from paraphrase_data import build

            (staged / "counts.json").parent.mkdir(parents=True, exist_ok=True)
            counts = build(staged, mrpc_repeat=3)
            (staged / "counts.json").write_text(json.dumps(counts))
    valid = SHARED / "data" / "QQP" / "valid.jsonl"
    return {"train": staged / "train.jsonl", "mrpc_valid": staged / "mrpc_valid.jsonl",
            "valid": valid if valid.exists() else STAGED / "QQP" / "valid.jsonl",
            "counts": json.loads((staged / "counts.json").read_text())}


def stage_data(mrpc_repeat: int = 3) -> None:
    """Copy what the GPU machine needs (it gets the working tree only) into gpu_data/."""
    from paraphrase_data import build

    counts = build(STAGED / "paraphrase", mrpc_repeat=mrpc_repeat)
    (STAGED / "paraphrase" / "counts.json").write_text(json.dumps(counts))
    (STAGED / "QQP").mkdir(parents=True, exist_ok=True)
    shutil.copy(SHARED / "data" / "QQP" / "valid.jsonl", STAGED / "QQP" / "valid.jsonl")
    print(f"staged {counts} into {STAGED} ({sum(f.stat().st_size for f in STAGED.rglob('*') if f.is_file()) / 1e6:.1f} MB); "
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
def cuda_tests_stage(on_cuda: bool, timeout: float = 240.0) -> dict:
    """``pytest -m cuda``; on a GPU every CUDA test must have run and passed (a skip is a failure there)."""
    import tempfile

    _place_shared_valid()
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "cuda.xml"
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                            f"--junitxml={junit}", "tests/test_cuda.py"],
                           cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           timeout=timeout)
        counts = _junit_counts(junit)
    tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
    problem = cuda_tests_problem(r.returncode, counts, on_cuda)
    if problem:
        raise RuntimeError(f"pytest -m cuda: {problem}:\n" + "\n".join(tail))
    return {"returncode": r.returncode, "summary": tail[-1] if tail else "", **(counts or {})}


def _place_shared_valid() -> None:
    """The CUDA tests read QQP valid from ../shared, which the GPU machine lacks: put the staged copy there."""
    target = SHARED / "data" / "QQP" / "valid.jsonl"
    staged = STAGED / "QQP" / "valid.jsonl"
    if not target.exists() and staged.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(staged, target)


def _junit_counts(path: Path) -> dict | None:
    """tests, failures, errors and skipped of a pytest ``--junitxml`` report; None without one."""
    import xml.etree.ElementTree as ET

    if not path.exists():
        return None
    suites = list(ET.parse(path).getroot().iter("testsuite"))
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}


def cuda_tests_problem(returncode: int, counts: dict | None, on_cuda: bool) -> str | None:
    """What is wrong with a ``pytest -m cuda`` run, or None. Without CUDA the tests skip (or none
    are collected: pytest's exit 5); with CUDA that would hide the very path under test."""
    if counts is None:
        return f"no report (exit {returncode})"
    if counts["failures"] or counts["errors"] or returncode not in (0, 5):
        return f"{counts['failures']} failed, {counts['errors']} errors (exit {returncode})"
    if on_cuda and (counts["tests"] == 0 or counts["skipped"]):
        return f"on CUDA, {counts['skipped']} of {counts['tests']} CUDA tests skipped: none may"
    return None


# --- 3. throughput --------------------------------------------------------------------------------
def _sources(n: int) -> list[str]:
    return [json.loads(x)["src"] for x in data_paths()["valid"].read_text().splitlines()[:n]]


def generation_throughput(device: str, preset: str, lines: int, work: Path, precision: str,
                          sampler: str = "ddim", steps: int = 20, workers: int = 0) -> dict:
    """Lines/s of ``-n 10 --mbr`` with ``sampler`` over ``steps``; ``workers`` > 0: through ``generate
    --gpus N``'s workers on ``device`` (``generate_parallel``: the first a thread of this process)."""
    import torch

    from diffuseq_cli.generation import GenerateOptions, SamplingConfig, generate_stream
    from diffuseq_cli.generation.parallel import generate_parallel
    from diffuseq_cli.modelfiles.folder import load_model_folder
    from helpers_models import build_tiny_model

    folder = build_tiny_model(work / f"gen-{preset}", preset_name=preset, vocab_size=8000, seq_len=64, steps=2000)
    loaded = load_model_folder(folder, device="cpu" if workers else device)
    batch = 640 if device.startswith("cuda") else 64
    opts = GenerateOptions(num_samples=10, mbr=True, sampling=SamplingConfig(sampler=sampler, steps=steps, batch_size=batch),
                           device=device, precision=precision)
    srcs = _sources(lines)

    def run(texts):
        if workers:
            return generate_parallel(loaded, texts, opts, [device] * workers)
        return generate_stream(loaded, texts, opts)

    list(run(srcs[: max(2, lines // 8)]))  # warm-up (kernels, allocator)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = sum(1 for _ in run(srcs))
    seconds = time.perf_counter() - t0
    return {"preset": preset, "sampler": sampler, "steps": steps, "workers": workers, "lines": n,
            "seconds": round(seconds, 2), "lines_per_s": round(n / seconds, 2), "parameters": loaded.model.num_parameters()}


def generation_settings() -> list[tuple[str, int, int]]:
    """(sampler, steps, workers): ddim over 20 steps, dpm++ over the embedded model's default steps
    (config.json "decoding"), and that again through ``generate --gpus 1``'s worker."""
    from diffuseq_cli.generation import SamplingConfig
    from diffuseq_cli.modelfiles.folder import read_config

    steps = SamplingConfig().steps_for(read_config(EMBEDDED))
    return [("ddim", 20, 0), ("dpm++", steps, 0), ("dpm++", steps, 1)]


def _timed_steps(cfg, device: str, steps: int, compile_model: bool = False) -> tuple:
    """Build the run's trainer and time ``steps`` steps: (trainer, seconds, tokens).

    Length-aware batches differ in length, and ``torch.compile`` compiles again for lengths it
    has not seen: so the very batches to be timed are first run untimed (every length warmed,
    for both sides of the compile comparison), then the data position is rewound and they are
    run again, timed.
    """
    import torch

    from diffuseq_cli.training.distributed import Placement
    from diffuseq_cli.training.run import Trainer, prepare_run

    shutil.rmtree(cfg.out, ignore_errors=True)
    cfg, tok = prepare_run(cfg, resume=False)
    trainer = Trainer(cfg, tok, Placement(0, 1, torch.device(device)), None)
    if compile_model:
        trainer.ddp = torch.compile(trainer.model)  # the loss calls it; embed/logits stay on the plain module
    trainer.next_batch()  # the epoch's batches exist from here on
    position = (trainer.epoch, trainer.batch_pos - 1, trainer.batches)
    trainer.epoch, trainer.batch_pos, trainer.batches = position
    for _ in range(steps):
        trainer.train_step()
    trainer.epoch, trainer.batch_pos, trainer.batches = position
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0, tokens = time.perf_counter(), 0
    for _ in range(steps):
        tokens += trainer.train_step()["tokens"]
    sync()
    return trainer, time.perf_counter() - t0, tokens


def training_throughput(device: str, preset: str, batch: int, steps: int, compile_model: bool, work: Path) -> dict:
    from diffuseq_cli.training.config import with_recipe

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


def throughput_stage(device: str, tiny: bool, work: Path, precision: str, compile_too: bool = True) -> dict:
    try_compile = device.startswith("cuda") and compile_too
    presets = ["tiny"] if tiny else ["small", "base"]
    gen = [generation_throughput(device, p, 8 if tiny else 256, work, precision, *setting)
           for p in presets for setting in generation_settings()]
    train = []
    for p in presets:
        batch = 8 if tiny else (1024 if p == "small" else 256)
        for comp in ([False, True] if try_compile and p == presets[0] else [False]):  # compiling costs a minute a model
            try:
                train.append(training_throughput(device, p, batch, 3 if tiny else 20, comp, work))
            except Exception as exc:  # noqa: BLE001: torch.compile may be unavailable; keep the rest
                train.append({"preset": p, "compile": comp, "error": f"{type(exc).__name__}: {exc}"[:300]})
    return {"generation": gen, "training": train}


# --- 4. a training run, then QQP valid and MRPC valid ---------------------------------------------
def recipe_for(device: str, tiny: bool, init: Path = None) -> dict:
    """The run's settings: tiny for the rehearsal; on a GPU the embedded model continued (``--init``,
    so the result keeps its size, 4.3M parameters, 9 MB in fp16, and its CPU speed) at batch 1024
    (DiffuSeq-v2's QQP run used 850) on every paraphrase pair we have (scripts/paraphrase_data.py)."""
    if tiny:
        return dict(preset="tiny", batch_size=8, lr=1e-3, warmup=2, diffusion_steps=100)
    if device.startswith("cuda"):
        return dict(init=str(init or EMBEDDED), batch_size=1024, lr=1e-3, warmup=200)
    return dict(init=str(init or EMBEDDED), batch_size=64, lr=5e-4, warmup=100)


def _log_event(events: list, record: dict) -> None:
    if record.get("event") in ("log", "stopped", "warning"):
        events.append({k: v for k, v in record.items() if k != "event" or v != "log"})


def train_stage(device: str, tiny: bool, minutes: float, work: Path, out: Path, init: Path = None) -> dict:
    """Train for ``minutes``; the model folder (fp16, the embedded model's decoding defaults) goes to ``out/model``."""
    import dataclasses
    import functools

    import torch

    from diffuseq_cli.modelfiles.folder import load_model_folder, read_config, save_model_folder
    from diffuseq_cli.training.config import with_recipe
    from diffuseq_cli.training.run import train

    paths = data_paths(work)
    settings = recipe_for(device, tiny, init)
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    base = dict(data=str(paths["train"] if not tiny else paths["valid"]), valid=str(paths["valid"]), out=str(run),
                regions="exact", absorbing_kind="v2", device="cuda" if device.startswith("cuda") else "cpu",
                tokenizer=str(EMBEDDED / "tokenizer.json"), save_every=10**9, keep=1, log_every=50,
                valid_every=0, seq_len=64)
    # The step count from a short timed probe of the same settings (on the small valid file), so
    # the learning rate reaches 0 on time.
    rate = None if tiny else _probe_rate(device, settings, {**base, "data": str(paths["valid"])}, work)
    steps = 20 if tiny else max(100, int(rate * minutes * 60 * 0.93))
    cfg = with_recipe("fast", **{**base, **settings, "steps": steps, "max_minutes": minutes * 1.1})
    events: list = []
    t0 = time.perf_counter()
    result = train(cfg, progress=functools.partial(_log_event, events))
    train_seconds = time.perf_counter() - t0
    loaded = load_model_folder(result.last_checkpoint, device="cpu")
    decoding = read_config(EMBEDDED).decoding  # the embedded model's decoding defaults travel with it
    config = dataclasses.replace(loaded.config, decoding=decoding)
    save_model_folder(out / "model", config, loaded.model, loaded.tokenizer,
                      (Path(result.last_checkpoint) / "README.md").read_text(), dtype=torch.float16)
    if (run / "metrics.jsonl").exists():
        shutil.copy(run / "metrics.jsonl", out / "train_metrics.jsonl")
    return {"steps": result.step, "probe_steps_per_s": rate and round(rate, 2), "train_seconds": round(train_seconds, 1),
            "recipe": {**settings, "steps": steps}, "data": paths["counts"], "parameters": loaded.model.num_parameters(),
            "log": events[-40:], "model_files": {f.name: f.stat().st_size for f in (out / "model").iterdir()}}


def _probe_rate(device: str, settings: dict, base: dict, work: Path) -> float:
    """Steps per second of the run's own settings (a few timed steps of a throw-away run)."""
    from diffuseq_cli.training.config import with_recipe

    cfg = with_recipe("fast", **{**base, **settings, "out": str(work / "rate-probe"), "steps": 10**6})
    _, seconds, _ = _timed_steps(cfg, device, 20)
    return 20 / seconds


def question_share(outputs: list[str], sources: list[str]) -> float:
    """Outputs that ask where their source states: the source has no '?', the output does."""
    stated = [o for o, s in zip(outputs, sources) if "?" not in s]
    return sum("?" in o for o in stated) / max(1, len(stated))


def score_model(folder: Path, pairs: list[tuple[str, str]], device: str, batch: int) -> dict:
    """``-n 10 --mbr`` with the folder's own decoding defaults (fp32), scored as ``diffuseq evaluate`` does."""
    from diffuseq_cli.evaluation.report import evaluate
    from diffuseq_cli.generation import GenerateOptions, SamplingConfig, generate_stream
    from diffuseq_cli.modelfiles.folder import load_model_folder

    loaded = load_model_folder(folder, device=device)
    srcs = [s for s, _ in pairs]
    refs = [t for _, t in pairs]
    opts = GenerateOptions(num_samples=10, mbr=True, sampling=SamplingConfig(batch_size=batch), device=device)
    t0 = time.perf_counter()
    best = [r.best for r in generate_stream(loaded, srcs, opts)]
    seconds = time.perf_counter() - t0
    report = evaluate([best], refs, sources=srcs)
    return {"lines": len(best), "generate_seconds": round(seconds, 1), **report.files[0].to_dict(),
            "copy_source": report.source.to_dict()["bleu"], "questions": round(question_share(best, srcs), 4),
            "examples": [{"src": s, "out": b} for s, b in list(zip(srcs, best))[:10]]}


def score_stage(device: str, out: Path, lines: int, baseline: Path = EMBEDDED) -> dict:
    """The trained model (as saved, fp16) and the one it started from, side by side on QQP valid and MRPC valid."""
    paths = data_paths()
    batch = 2560 if device.startswith("cuda") else 64
    sets = {"qqp_valid": _pairs(paths["valid"])[:lines], "mrpc_valid": _pairs(paths["mrpc_valid"])[:lines]}
    return {name: {"trained": score_model(out / "model", pairs, device, batch),
                   "started_from": score_model(baseline, pairs, device, batch)} for name, pairs in sets.items()}


def _pairs(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [(" ".join(r["src"].split()), " ".join(r["trg"].split())) for r in rows]


STAGES = ("env", "train", "score", "cuda_tests", "throughput")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    ap.add_argument("--device", default=None, help="cuda (default where present) or cpu")
    ap.add_argument("--tiny", action="store_true", help="the rehearsal: tiny models, a few steps, a few lines")
    ap.add_argument("--minutes", type=float, default=4.0, help="length of the training run")
    ap.add_argument("--lines", type=int, default=2048, help="QQP valid (and MRPC valid) lines scored after training")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds the whole run may take: the stages after 'score' are skipped when too little is left")
    ap.add_argument("--init", type=Path, default=None, help="the model folder the run continues (default: the embedded model)")
    ap.add_argument("--mrpc-repeat", type=int, default=3, help="with --stage-data: how often MRPC's pairs appear")
    ap.add_argument("--stage-data", action="store_true", help="build the data into gpu_data/ for the GPU machine, then stop")
    args = ap.parse_args()
    if args.stage_data:
        stage_data(args.mrpc_repeat)
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
    started = time.perf_counter()
    left = lambda: float("inf") if args.budget is None else args.budget - (time.perf_counter() - started)  # noqa: E731
    runs = {  # the most valuable first: a run cut short keeps the model and its scores
        "env": lambda: env_stage(device),
        "train": lambda: train_stage(device, args.tiny, args.minutes, work, args.out, args.init),
        "score": lambda: score_stage(device, args.out, lines, args.init or EMBEDDED),
        "cuda_tests": lambda: cuda_tests_stage(device.startswith("cuda"), timeout=max(10.0, min(240.0, left() - 60))),
        "throughput": lambda: throughput_stage(device, args.tiny, work, precision, compile_too=left() > 200),
    }
    failed = 0
    for name in STAGES:
        if name not in wanted:
            continue
        if name in ("cuda_tests", "throughput") and left() < 90:
            figures.record(name, {"status": "skipped", "reason": f"{left():.0f} s of the budget left"})
            continue
        failed += stage(figures, name, runs[name])["status"] != "ok"
    print(f"figures: {figures.path}; {failed} stage(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
