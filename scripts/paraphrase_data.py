"""Every paraphrase pair we have, as one training file (issue 19).

    python scripts/paraphrase_data.py --out runs/data          # train.jsonl, mrpc_valid.jsonl

- QQP train (questions) and MRPC train (news statements), each pair in both directions:
  paraphrase is symmetric, and the reversed pair is a new example at no cost.
- MRPC's last ``--mrpc-valid`` pairs (300) are held out as ``mrpc_valid.jsonl``: the check that
  statements stay statements, never trained on.
- Only MRPC pairs that fit ``--seq-len`` whole (with the model's tokenizer) are kept: a cut
  target teaches the model to stop mid-sentence (64% of MRPC's pairs do not fit 64 positions).
- MRPC is repeated ``--mrpc-repeat`` times (it is 2.6% of the pairs) and the whole file shuffled
  with a fixed seed, so every part of an epoch holds questions and statements both.

The data stays outside the package (its terms: shared/README.md).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TOKENIZER = ROOT / "diffuseq_cli" / "models" / "paraphrase" / "tokenizer.json"


def read(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            pairs.append((rec["src"], rec["trg"]))
    return pairs


def both_ways(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [p for s, t in pairs for p in ((s, t), (t, s))]


def fits(pairs: list[tuple[str, str]], tokenizer: Path, seq_len: int) -> list[tuple[str, str]]:
    """The pairs whose source and target fit ``seq_len`` positions together, uncut."""
    from diffuseq_cli.core.layout import NUM_SPECIALS
    from diffuseq_cli.modelfiles.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    src, trg = tok.encode([s for s, _ in pairs]), tok.encode([t for _, t in pairs])
    return [p for p, x, y in zip(pairs, src, trg) if len(x) + len(y) + NUM_SPECIALS <= seq_len]


def build(out: Path, shared: Path = SHARED, mrpc_valid: int = 300, mrpc_repeat: int = 3, seed: int = 0,
          tokenizer: Path = TOKENIZER, seq_len: int = 64) -> dict:
    """Write ``train.jsonl`` and ``mrpc_valid.jsonl`` under ``out``; return their counts."""
    qqp = read(shared / "QQP" / "train.jsonl")
    mrpc = read(shared / "MRPC" / "train.jsonl")
    mrpc_all, held = mrpc[:-mrpc_valid], mrpc[-mrpc_valid:]
    mrpc_train = fits(mrpc_all, tokenizer, seq_len)
    rows = both_ways(qqp) + both_ways(mrpc_train) * mrpc_repeat
    random.Random(seed).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "train.jsonl", rows)
    write(out / "mrpc_valid.jsonl", held)
    return {"train": len(rows), "qqp_pairs": len(qqp), "mrpc_pairs": len(mrpc_train), "mrpc_too_long": len(mrpc_all) - len(mrpc_train), "mrpc_valid": len(held)}


def write(path: Path, pairs: list[tuple[str, str]]) -> None:
    path.write_text("".join(json.dumps({"src": s, "trg": t}) + "\n" for s, t in pairs), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (QQP/, MRPC/)")
    ap.add_argument("--mrpc-valid", type=int, default=300)
    ap.add_argument("--mrpc-repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", type=Path, default=TOKENIZER, help="the model's tokenizer (which MRPC pairs fit)")
    ap.add_argument("--seq-len", type=int, default=64)
    args = ap.parse_args()
    print(json.dumps(build(args.out, args.shared, args.mrpc_valid, args.mrpc_repeat, args.seed, args.tokenizer, args.seq_len)))


if __name__ == "__main__":
    main()
