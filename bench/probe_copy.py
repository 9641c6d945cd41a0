"""How fast a denoiser learns to copy: target = source, random words and lengths.

Paraphrase data is mostly copying with edits, so this isolates one ability: aligning target
word j with source word j when the target's offset depends on the source length. Compares
position schemes (and the token loss) by the accuracy of the head on f(z_t, t) at the
noisiest timestep, where the source is the only information, after a fixed number of steps.

    python bench/probe_copy.py --steps 400
"""

from __future__ import annotations

import argparse
import time

import torch

from diffuseq_cli.config import DiffusionConfig, preset
from diffuseq_cli.core.diffusion import Diffusion
from diffuseq_cli.core.model import DiffuSeqTransformer

V, L, PAD, CLS, SEP = 60, 48, 0, 2, 3


def batch(g: torch.Generator, B: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] x [SEP] [SEP] [CLS] x [SEP] [PAD]..., x of 5-20 random words; mask on the target part."""
    ids = torch.full((B, L), PAD)
    mask = torch.zeros(B, L, dtype=torch.bool)
    for b in range(B):
        n = int(torch.randint(5, 21, (1,), generator=g))
        x = torch.randint(4, V, (n,), generator=g)
        seq = torch.cat([torch.tensor([CLS]), x, torch.tensor([SEP, SEP, CLS]), x, torch.tensor([SEP])])
        ids[b, : len(seq)] = seq
        mask[b, n + 3:] = True
    return ids, mask


def run(positions: str, token_loss: float, steps: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    diff = Diffusion(DiffusionConfig(steps=100))
    model = DiffuSeqTransformer(preset("tiny", V, max_positions=L, positions=positions, hidden_size=128, ffn_size=512))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        ids, mask = batch(g, 32)
        t = torch.randint(0, 100, (32,), generator=g)
        shape = (*ids.shape, model.config.embed_dim)
        losses = diff.training_losses(model, ids, mask, t, torch.randn(shape, generator=g), torch.randn(shape, generator=g),
                                      token_weight=token_loss)
        opt.zero_grad()
        losses.loss.mean().backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        ids, mask = batch(torch.Generator().manual_seed(123), 256)
        real = mask & (ids != PAD)
        t = torch.full((256,), 99)
        zt = diff.q_sample(model.embed(ids), t, torch.randn(*ids.shape, model.config.embed_dim), mask)
        pred = model(zt, diff.model_time(t), None, target_mask=mask)
        acc = float((model.logits(pred).argmax(-1) == ids)[real].float().mean())
    return {"positions": positions, "token_loss": token_loss, "steps": steps, "copy_accuracy_at_T": round(acc, 4),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for positions in ("absolute", "segment"):
        for token_loss in (0.0, 1.0):
            print(run(positions, token_loss, args.steps), flush=True)


if __name__ == "__main__":
    main()
