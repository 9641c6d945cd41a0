"""`diffuseq generate`: read sources, stream them through the model, write results in input order."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..config import LENGTH_MODES, REMASK_SCHEDULES, SAMPLERS
from ..generation.config import CPU_PROCESSES, SAMPLER_STEPS, SamplingConfig
from ..modelfiles.tasks import DEFAULT_TASK, TASKS
from .help import HelpOpt
from .options import DeviceOpt, InputFormat, MBRMetric, NumSamplesOpt, OutputFormat, OutputOpt, Precision, QuietOpt, Rounding, SeedOpt, choices, parse_gpus

_DEFAULT = SamplingConfig()  # every sampling default, shown in --help (generation/config.py)
_STEPS = ", ".join(f"{n} with {name}" for name, n in SAMPLER_STEPS.items())
_TASKS_HELP = (f"Use this task's model when --model is not given: {', '.join(t.name for t in TASKS.values() if t.spec)}; "
               f"no model yet: {', '.join(t.name for t in TASKS.values() if not t.spec)} (default: {DEFAULT_TASK}).")


Sampler = choices("Sampler", SAMPLERS)
Length = choices("Length", LENGTH_MODES)
RemaskSchedule = choices("RemaskSchedule", REMASK_SCHEDULES)


def generate(
    input: Annotated[str, typer.Option("--input", "-i", help="Source lines (text, or JSONL with 'src'); '-' is stdin.")] = "-",
    output: OutputOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model folder, official .pt, or ORG/NAME[@REV] on the Hub.")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help=_TASKS_HELP)] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help="Tokenizer for an official .pt (vocab.txt or tokenizer.json).")] = None,
    heads: Annotated[int, typer.Option("--heads", help="Attention heads of an official .pt (not stored in it; bert-base has 12).")] = 12,
    num_samples: NumSamplesOpt = 1,
    mbr: Annotated[bool, typer.Option("--mbr", help="Write one candidate per line, chosen by MBR over the -n candidates.")] = False,
    avoid_copy: Annotated[Optional[bool], typer.Option("--avoid-copy/--allow-copy", help="With --mbr: choose the best candidate that is not the source itself, when there is one (paraphrasing) (default: the model's, in its config.json \"decoding\").", show_default=False)] = None,
    keep_mood: Annotated[Optional[bool], typer.Option("--keep-mood/--any-mood", help="With --mbr: prefer candidates that keep the source's mood: a question's a question, a statement's a statement (default: the model's).", show_default=False)] = None,
    whole_words: Annotated[Optional[bool], typer.Option("--whole-words/--any-words", help="With --mbr: prefer the candidates with the fewest made-up words (words neither in the source nor whole in the model's vocabulary, e.g. \"goodologist\") (default: the model's).", show_default=False)] = None,
    mbr_metric: Annotated[MBRMetric, typer.Option("--mbr-metric", help="Utility between candidates for --mbr.")] = MBRMetric.bleu,
    steps: Annotated[Optional[int], typer.Option("--steps", help=f"Denoising steps, up to the model's T (default: the model's own for its sampler, in its config.json \"decoding\"; else {_STEPS}, T with ddpm).", show_default=False)] = None,
    sampler: Annotated[Optional[Sampler], typer.Option("--sampler", help="ddim: deterministic, any number of steps; dpm++: DPM-Solver++(2M), deterministic, second order (DiffuSeq-v2's sampler); ddpm: ancestral (default: the model's; ddim for older models).", show_default=False)] = None,
    length: Annotated[Optional[Length], typer.Option("--length", help="predict: the target region is exactly the length the model's length head predicts; auto: sized from the model's length statistics, padded; full: always seq_len (the official layout) (default: predict for models with a length head, else auto).", show_default=False)] = None,
    lengths: Annotated[Optional[int], typer.Option("--lengths", help="With --length predict: spread the -n candidates over this many most likely lengths (a length beam; MBR picks among all) (default: the model's).", show_default=False)] = None,
    rounding: Annotated[Optional[Rounding], typer.Option("--rounding", help="Round each z_0 estimate to words by l2 (the nearest embedding), logits (the head's argmax), soft (the embeddings averaged under the head's probabilities) or none (default: the model's own).")] = None,
    strength: Annotated[float, typer.Option("--strength", help="1: start from pure noise (the paper). Below 1: start from the source, noised to this share of T, and denoise (outputs closer to the source).")] = _DEFAULT.strength,
    remask: Annotated[Optional[bool], typer.Option("--remask/--no-remask", help="At each step put the least confident words back in the absorbing state, in the share the model was trained with (mask-predict) (default: on for models trained with --absorbing).")] = None,
    remask_schedule: Annotated[RemaskSchedule, typer.Option("--remask-schedule", help="trained: re-mask the share the model was trained with at each step; linear: from all words at the start to none at the end (mask-predict).")] = RemaskSchedule(_DEFAULT.remask_schedule),
    remask_repeats: Annotated[Optional[bool], typer.Option("--remask-repeats/--no-remask-repeats", help="With re-masking: also re-mask every word equal to the word before it, so that no stutter is kept while steps remain (default: on for models trained with exact regions or DiffuSeq-v2's state).", show_default=False)] = None,
    dedup: Annotated[Optional[bool], typer.Option("--dedup/--no-dedup", help="Collapse runs of the same word in each output (\"so so big\" -> \"so big\"), the usual clean-up of non-autoregressive outputs (default: the model's; off for older models: the paper's decoding).", show_default=False)] = None,
    seed: SeedOpt = _DEFAULT.seed,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Candidates per model call (memory, not results: any size gives the same output).")] = _DEFAULT.batch_size,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="text: the chosen candidate per line (-n lines per source without --mbr); jsonl: one object per source.")] = OutputFormat.text,
    input_format: Annotated[InputFormat, typer.Option("--input-format", help="auto: JSONL when the first non-empty line starts with '{'.")] = InputFormat.auto,
    device: DeviceOpt = "auto",
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="N GPUs (0..N-1) or a list like 0,2; one process each, the input split among them (the output is one process's).", show_default=False)] = None,
    nproc: Annotated[Optional[int], typer.Option("--nproc", help=f"Workers on --device (this process and N-1 more), the input split among them (the output is one process's); on a CPU one thread each unless --threads (default: on a CPU one per core, at most {CPU_PROCESSES}; one on a GPU).", show_default=False)] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Default: bf16 on GPUs that support it, fp32 otherwise.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="With -o: keep the lines already written and continue after them.")] = False,
    quiet: QuietOpt = False,
    show_help: HelpOpt = False,
):
    """Generate target text for each source line with a DiffuSeq model.

    Reads one source per line (a file or stdin); writes results in input order.
    An empty line gives an empty output line.
    The same --seed gives the same output for any --batch-size.

    Examples:

    \b
      diffuseq generate --task paraphrase -i in.txt -n 10 --mbr > out.txt
      echo "how do i learn python?" | diffuseq generate -m runs/qqp/latest
      diffuseq generate -m runs/qqp/latest -i in.txt -n 5 -f jsonl -o out.jsonl
      diffuseq generate -m ema_0.9999_050000.pt --tokenizer vocab.txt -i in.txt
      diffuseq generate -m runs/qqp/latest -i big.txt -o out.txt --resume
    """
    from ..errors import UsageError
    from .generate_run import run_generate

    if resume and not output:
        raise UsageError("--resume needs -o FILE")
    if mbr and num_samples < 2:
        raise UsageError("--mbr needs -n 2 or more candidates")
    choice = {"avoid_copy": avoid_copy, "keep_mood": keep_mood, "whole_words": whole_words}
    for name, value in choice.items():
        if value and not mbr:
            raise UsageError(f"--{name.replace('_', '-')} chooses among candidates: it needs --mbr")
    sampling = SamplingConfig(
        steps=steps, sampler=sampler.value if sampler else None, seed=seed, length=length.value if length else None, lengths=lengths,
        rounding=rounding.value if rounding else None, strength=strength, remask=remask,
        remask_schedule=remask_schedule.value, remask_repeats=remask_repeats, dedup=dedup, batch_size=batch_size,
    )
    run_generate(
        sampling, input=input, output=output, model=model, task=task, tokenizer=tokenizer, heads=heads,
        num_samples=num_samples, mbr=mbr, mbr_metric=mbr_metric.value, choice=choice, fmt=fmt.value,
        input_format=input_format.value, device=device, precision=precision.value if precision else None,
        resume=resume, quiet=quiet, nproc=nproc, gpus=parse_gpus(gpus),
    )
