"""Benchmark: what a BERT start (``train --init BERT``) costs, against the paper's ``base`` preset.

    python bench/bench_bert_init.py [--batch-size 8] [--seq-len 64] [--steps 3] [--layers 12 --hidden 768 ...]

No BERT can be downloaded here, so the script writes a random BERT folder of bert-base's sizes
(12 layers, hidden 768, 12 heads, feed-forward 3072, 512 positions) with bert-base-uncased's
vocabulary (``../shared/tokenizers/bert-base-uncased/vocab.txt``, 30,522 tokens); the cost does
not depend on the values. For the BERT start and for the ``base`` preset with the same vocabulary
(d = 128, 128 positions), both with the ``paper`` recipe on QQP valid, it reports the parameters,
the time to prepare the run (for the BERT: reading and checking its weights) and to build the
trainer (placing them), and the median time of full training steps (fp32, one process, this CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from bench_train import measure
from diffuseq_cli.training.config import with_recipe
from diffuseq_cli.training.distributed import Placement
from diffuseq_cli.training.run import Trainer, prepare_run

SHARED = Path(__file__).resolve().parents[2] / "shared"
QQP_VALID = SHARED / "data" / "QQP" / "valid.jsonl"
BERT_VOCAB = SHARED / "tokenizers" / "bert-base-uncased" / "vocab.txt"


def write_random_bert(folder: Path, layers: int, hidden: int, heads: int, ffn: int, positions: int) -> None:
    """A BERT folder as ``save_pretrained`` writes one (BertModel names), with random weights."""
    folder.mkdir(parents=True)
    shutil.copy(BERT_VOCAB, folder / "vocab.txt")
    vocab = sum(1 for _ in open(BERT_VOCAB, encoding="utf-8"))
    config = {"model_type": "bert", "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": heads, "intermediate_size": ffn, "max_position_embeddings": positions,
              "hidden_act": "gelu", "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1, "type_vocab_size": 2}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    t = {"embeddings.word_embeddings.weight": rand(vocab, hidden),
         "embeddings.position_embeddings.weight": rand(positions, hidden),
         "embeddings.token_type_embeddings.weight": rand(2, hidden),
         "embeddings.LayerNorm.weight": torch.ones(hidden), "embeddings.LayerNorm.bias": torch.zeros(hidden)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            t[p + name + ".weight"], t[p + name + ".bias"] = rand(hidden, hidden), torch.zeros(hidden)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = rand(ffn, hidden), torch.zeros(ffn)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = rand(hidden, ffn), torch.zeros(hidden)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + name + ".weight"], t[p + name + ".bias"] = torch.ones(hidden), torch.zeros(hidden)
    save_file(t, str(folder / "model.safetensors"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one untimed)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=3072)
    ap.add_argument("--positions", type=int, default=512)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bert = Path(tmp) / "bert"
        write_random_bert(bert, args.layers, args.hidden, args.heads, args.ffn, args.positions)
        common = dict(data=str(QQP_VALID), batch_size=args.batch_size, seq_len=args.seq_len, steps=10_000)
        starts = {
            "BERT start (--init)": dict(init=str(bert)),
            "base preset, same vocabulary": dict(preset="base", tokenizer=str(BERT_VOCAB)),
        }
        print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
              f"paper recipe, batch {args.batch_size}, seq_len {args.seq_len}, QQP valid, fp32")
        print("| start | parameters | d | prepare_run s | Trainer s | ms/step (median) | samples/s |")
        print("|---|---|---|---|---|---|---|")
        results = []
        for name, start in starts.items():
            r = measure_start(with_recipe("paper", out=str(Path(tmp) / name.split()[0]), **common, **start), args.steps)
            results.append({"start": name, **r})
            print(f"| {name} | {r['parameters']:,} | {r['embed_dim']} | {r['prepare_s']} | {r['trainer_s']} | "
                  f"{r['ms_per_step_median']:,} | {r['samples_per_s']} |", flush=True)
        print(json.dumps(results))


def measure_start(cfg, steps: int) -> dict:
    """Prepare the run and build its trainer (timed once each), then time training steps."""
    t0 = time.perf_counter()
    cfg, tok = prepare_run(cfg, resume=False)
    prepared = time.perf_counter() - t0
    t0 = time.perf_counter()
    Trainer(cfg, tok, Placement(0, 1, torch.device("cpu")), None)
    built = time.perf_counter() - t0
    d = json.loads((Path(cfg.out) / "config.json").read_text())["resolved_model"]["embed_dim"]
    return {"embed_dim": d, "prepare_s": round(prepared, 2), "trainer_s": round(built, 2), **measure(cfg, tok, warmup=1, steps=steps)}

if __name__ == "__main__":
    main()
