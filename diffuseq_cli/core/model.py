"""The DiffuSeq denoiser f_theta(z_t, t) -> z_0 (paper section 3; DESIGN.md section 3).

A BERT-style post-LayerNorm transformer encoder over the whole sequence
``z_t = x ⊕ y_t``. Inputs live in the d-dimensional word-embedding space; a
Linear-Tanh-Linear projection lifts them to the hidden size and another brings
them back. The timestep enters as sinusoidal features through a 2-layer MLP,
added to every position with the learned position embeddings. The embedding
table is tied to the output head (``lm_head``) which has its own bias.
The computation matches the official code's (DESIGN.md section 4) so that
converted official checkpoints give the same numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps: (B,) -> (B, dim), cosines first."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _projection(d_in: int, d_out: int) -> nn.Module:
    """Linear-Tanh-Linear; its inner width is the hidden size (the larger side)."""
    d_mid = max(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, d_mid), nn.Tanh(), nn.Linear(d_mid, d_out))


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = cfg.dropout

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L, H = h.shape
        nh = self.num_heads

        def heads(x):
            return x.view(B, L, nh, H // nh).transpose(1, 2)  # (B, nh, L, hs)

        q, k, v = heads(self.query(h)), heads(self.key(h)), heads(self.value(h))
        p = self.dropout if self.training else 0.0
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L): attend to real positions only
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, L, hs)
        return y.transpose(1, 2).reshape(B, L, H)


class Block(nn.Module):
    """One post-LayerNorm BERT layer: LN(h + Attn(h)), then LN(h + FFN(h)) with exact-erf GELU."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.attn_out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.ln_attn = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.ffn_size)
        self.ffn_out = nn.Linear(cfg.ffn_size, cfg.hidden_size)
        self.ln_ffn = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_attn(h + self.drop(self.attn_out(self.attn(h, key_mask))))
        return self.ln_ffn(h + self.drop(self.ffn_out(F.gelu(self.ffn_in(h)))))


class LengthPredictor(nn.Module):
    """p(number of target words | source), a classifier over 0..classes-1 (Mask-Predict's length head).

    It reads the source's word embeddings (pooled mean and max of a projection, plus the source
    length), not the denoiser's hidden states: those attend to the target region, whose size
    is the answer. Small and cheap; ``generate --length predict`` sizes the region with it.
    """

    def __init__(self, embed_dim: int, hidden: int, classes: int):
        super().__init__()
        self.classes = classes
        self.proj = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU())
        self.source_length = nn.Embedding(classes, hidden)
        self.out = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Linear(hidden, classes))

    def forward(self, emb: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        """emb (B, S, d), source_mask (B, S) bool (True on source tokens) -> logits (B, classes)."""
        h = self.proj(emb)  # (B, S, hidden)
        m = source_mask[..., None]
        mean = (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)
        peak = h.masked_fill(~m, float("-inf")).amax(dim=1)
        n = source_mask.sum(dim=1).clamp_max(self.classes - 1)
        return self.out(torch.cat([mean, peak, self.source_length(n)], dim=-1))


class DiffuSeqTransformer(nn.Module):
    """f_theta: (z_t (B, L, d), t (B,)) -> predicted z_0 (B, L, d)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        d, H = cfg.embed_dim, cfg.hidden_size
        self.word_embedding = nn.Embedding(cfg.vocab_size, d)  # tied with the output head
        self.lm_head_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        t_hidden = 4 * cfg.time_embed_dim
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_embed_dim, t_hidden), nn.SiLU(), nn.Linear(t_hidden, H))
        d_in = 2 * d if cfg.self_condition else d
        self.up_proj = _projection(d_in, H) if d_in != H else nn.Identity()
        self.position_embedding = nn.Embedding(cfg.max_positions, H)
        if cfg.positions == "segment":
            self.segment_embedding = nn.Embedding(2, H)  # 0: source part, 1: target part
        if cfg.absorbing_state:
            self.absorbing_state = nn.Parameter(torch.zeros(d))  # set to unit scale below, like a word
        if cfg.length_head:
            self.length_predictor = LengthPredictor(d, H, cfg.max_positions)
        self.ln_in = nn.LayerNorm(H, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.down_proj = _projection(H, d) if d != H else nn.Identity()
        self.apply(self._init)
        # Word embeddings start at unit scale, as in the official code: with the 0.02 of the
        # transformer layers the signal would vanish under the diffusion noise at almost every t.
        nn.init.normal_(self.word_embedding.weight, std=1.0)
        if cfg.absorbing_state:
            nn.init.normal_(self.absorbing_state, std=1.0)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    # --- the embedding space -------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """EMB(w): token ids (B, L) -> embeddings (B, L, d)."""
        return self.word_embedding(ids)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """p(w | z) through the tied head: (B, L, d) -> (B, L, V)."""
        return F.linear(z, self.word_embedding.weight, self.lm_head_bias)

    # --- the denoiser ----------------------------------------------------------
    def forward(
        self, z_t: torch.Tensor, t: torch.Tensor, self_cond: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None, key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z_t (B, L, d), t (B,) as the model sees it (already rescaled) -> z_0 estimate (B, L, d).

        ``target_mask`` (B, L) bool, True on the target part: needed by ``positions="segment"``
        models only (the absolute-position model ignores it). ``key_mask`` (B, L) bool, True on
        real positions: batch padding after shorter sequences is then invisible to attention
        (training with exact target regions); None: every position is real.
        """
        B, L, _ = z_t.shape
        if L > self.config.max_positions:
            raise ValueError(f"sequence of {L} positions exceeds the model's {self.config.max_positions}")
        if self.config.self_condition:
            z_t = torch.cat([z_t, torch.zeros_like(z_t) if self_cond is None else self_cond], dim=-1)
        if t.shape[0] > 1 and bool((t == t[:1]).all()):
            # One timestep for the whole batch (sampling): compute it once. This also keeps a row's
            # result independent of the batch size (BLAS kernels differ for 1 row and for many).
            t = t[:1]
        temb = self.time_mlp(timestep_embedding(t, self.config.time_embed_dim).to(z_t.dtype))  # (B or 1, H)
        h = self.up_proj(z_t) + self._positions(B, L, target_mask) + temb[:, None, :]  # (B, L, H)
        h = self.drop(self.ln_in(h))
        for block in self.blocks:
            h = block(h, key_mask)
        return self.down_proj(h)  # (B, L, d)

    def _positions(self, B: int, L: int, target_mask: torch.Tensor | None) -> torch.Tensor:
        """Position features, (1, L, H) absolute or (B, L, H) numbered per segment."""
        if self.config.positions == "absolute":
            return self.position_embedding.weight[:L][None]
        if target_mask is None:
            raise ValueError("this model numbers positions per segment: pass target_mask")
        idx = torch.arange(L, device=target_mask.device).expand(B, L)
        start = torch.where(target_mask, idx, L).min(dim=1, keepdim=True).values  # first target position
        pos = torch.where(target_mask, idx - start, idx)
        return self.position_embedding(pos) + self.segment_embedding(target_mask.long())

    def length_logits(self, ids: torch.Tensor, source_mask: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Target-length logits (B, max_positions) for source ids (B, S) where ``source_mask`` holds.

        ``emb``: ``embed(ids)`` when the caller has it already (the training loss). The embeddings
        are detached: the head learns from them without pulling them its way.
        """
        emb = self.embed(ids) if emb is None else emb
        return self.length_predictor(emb.detach(), source_mask)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
