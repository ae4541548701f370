"""The 3-D U-Net of lesion-ddpm in PyTorch, module for module as models/Blocks.cpp and
models/UNet3D.cpp: the same submodule names (so `lddpm export`'s state dict loads without
renaming), the same operations in the same order (so outputs agree with the C++ model to float
rounding; docs/python.md gives the measured agreement)."""
import contextlib
import math
import threading
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


_scope = threading.local()


@contextlib.contextmanager
def inference() -> Iterator[None]:
    """A region of pure inference under torch.no_grad() (models/Conv3d.h InferenceScope): the
    sampler and pix2pix's synthesize run in one, and Conv3d calls oneDNN directly only there."""
    depth = getattr(_scope, "depth", 0)
    _scope.depth = depth + 1
    try:
        with torch.no_grad():
            yield
    finally:
        _scope.depth = depth


class Conv3d(nn.Conv3d):
    """nn.Conv3d whose inference on the CPU always runs oneDNN's kernel, as models/Conv3d.h does:
    LibTorch 1.13 otherwise takes its slow im2col kernel for small batch-1 inputs (and, with one
    thread, for 1x1x1 kernels), which is slower and sums differently. Outside `inference()` it is
    nn.Conv3d unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (getattr(_scope, "depth", 0) == 0 or torch.is_grad_enabled()
                or x.device.type != "cpu" or x.dtype != torch.float32
                or not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled
                or self.padding_mode != "zeros" or isinstance(self.padding, str)):
            return super().forward(x)
        return torch.mkldnn_convolution(x, self.weight, self.bias, list(self.padding),
                                        list(self.stride), list(self.dilation), self.groups)


def conv3(cin: int, cout: int, stride: int = 1) -> Conv3d:
    return Conv3d(cin, cout, 3, stride=stride, padding=1)


def sinusoidal_embedding(t: torch.Tensor, dim: int, like: torch.Tensor) -> torch.Tensor:
    """t [B] -> [B, dim]: cos then sin of t times geometric frequencies, computed in float32."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=like.device)
                      * (-math.log(10000.0) / half))
    args = t.to(torch.float32).unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.cos(args), torch.sin(args)], 1).to(like.dtype)


class TimestepEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, 4 * dim)

    def forward(self, t, like):
        return self.fc2(F.silu(self.fc1(sinusoidal_embedding(t, self.dim, like))))


def modulation_maps(gamma_beta: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """[γ, β] along channels -> (scale 1 + γ, shift β): what modulate applies."""
    gamma, beta = gamma_beta.chunk(2, dim=1)
    return 1 + gamma, beta


def modulate(h: torch.Tensor, maps: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """h * (1 + γ) + β, from the (scale, shift) of modulation_maps."""
    scale, shift = maps
    return h * scale + shift


class MaskModulation(nn.Module):
    """SPADE: h * (1 + γ(mask)) + β(mask) from two 3x3x3 convolutions of the mask."""

    def __init__(self, channels: int, mask_channels: int, hidden: int):
        super().__init__()
        self.shared = conv3(mask_channels, hidden)
        self.gamma_beta = conv3(hidden, 2 * channels)

    def maps(self, mask):
        return modulation_maps(self.gamma_beta(F.silu(self.shared(mask))))

    def forward(self, h, mask):
        return modulate(h, self.maps(mask))


class MaskEmbedding(nn.Module):
    """One level's mask features shared by its blocks (--mask-embedding level)."""

    def __init__(self, mask_channels: int, hidden: int):
        super().__init__()
        self.conv1 = conv3(mask_channels, hidden)
        self.conv2 = conv3(hidden, hidden)

    def forward(self, mask):
        return F.silu(self.conv2(F.silu(self.conv1(mask))))


class ResBlock3D(nn.Module):
    """GroupNorm -> [modulate] -> SiLU -> conv -> + emb -> GroupNorm -> [modulate] -> SiLU -> conv,
    plus the shortcut (1x1x1 convolution when the width changes)."""

    def __init__(self, cin: int, cout: int, embed_dim: int, mask_channels: int, hidden: int,
                 shared_embedding: bool, groups: int):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = conv3(cin, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = conv3(cout, cout)
        self.skip = Conv3d(cin, cout, 1) if cin != cout else None
        self.emb_proj = nn.Linear(embed_dim, cout) if embed_dim > 0 else None
        self.mod1 = self.mod2 = self.mod_gamma_beta = None
        if mask_channels > 0 and shared_embedding:
            self.mod_gamma_beta = Conv3d(hidden, 2 * (cin + cout), 1)
        elif mask_channels > 0:
            self.mod1 = MaskModulation(cin, mask_channels, hidden)
            self.mod2 = MaskModulation(cout, mask_channels, hidden)

    @property
    def modulated(self) -> bool:
        return self.mod1 is not None or self.mod_gamma_beta is not None

    def modulation_maps(self, mask):
        """Both sites' (scale, shift) for `mask`: a function of the mask alone (UNet3D.condition)."""
        if self.mod1 is not None:
            return self.mod1.maps(mask), self.mod2.maps(mask)
        gamma_beta = self.mod_gamma_beta(mask).split([2 * self.cin, 2 * self.cout], dim=1)
        return modulation_maps(gamma_beta[0]), modulation_maps(gamma_beta[1])

    def forward(self, x, emb: Optional[torch.Tensor], mask: Optional[torch.Tensor], maps=None):
        shortcut = x if self.skip is None else self.skip(x)
        return shortcut + self.branch(x, emb, mask, maps)

    def branch(self, x, emb, mask, maps=None):
        if maps is None and self.mod_gamma_beta is not None:
            maps = self.modulation_maps(mask)

        def site(h, i):
            if maps is not None:
                return modulate(h, maps[i])
            if self.mod1 is None:
                return h
            return (self.mod1 if i == 0 else self.mod2)(h, mask)

        h = self.conv1(F.silu(site(self.norm1(x), 0)))
        if self.emb_proj is not None:
            e = self.emb_proj(F.silu(emb))
            h = h + e.view(e.size(0), e.size(1), 1, 1, 1)
        return self.conv2(F.silu(site(self.norm2(h), 1)))


class Downsample3D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3(channels, channels, stride=2)

    def forward(self, x):
        return self.conv(x)


class Upsample3D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3(channels, channels)

    def forward(self, x):
        size = (x.size(2) * 2, x.size(3) * 2, x.size(4) * 2)
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class AttentionBlock3D(nn.Module):
    """Multi-head self-attention over all voxels of a level, residual."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = Conv3d(channels, 3 * channels, 1)
        self.proj = Conv3d(channels, channels, 1)

    def forward(self, x):
        b, c = x.size(0), x.size(1)
        n = x.size(2) * x.size(3) * x.size(4)
        head_dim = c // self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(b * self.heads, 3 * head_dim, n).chunk(3, dim=1)
        scale = 1.0 / math.sqrt(head_dim)
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * scale, -1)
        out = torch.bmm(v, weights.transpose(1, 2))
        return x + self.proj(out.reshape(x.shape))


class UNet3D(nn.Module):
    """[B, in, D, H, W] (+ timesteps [B], + mask [B, Cm, D, H, W]) -> [B, out, D, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, base_channels: int,
                 channel_mult: List[int], blocks_per_level: int = 1,
                 attention_levels: List[int] = (), attention_heads: int = 4, groups: int = 8,
                 use_timestep: bool = True, mask_channels: int = 0, mask_at_input: bool = True,
                 mask_in_encoder: bool = False, mask_in_bottleneck: bool = False,
                 mask_in_decoder: bool = False, modulation_hidden: int = 32,
                 shared_mask_embedding: bool = False):
        super().__init__()
        self.levels = len(channel_mult)
        self.in_channels = in_channels
        self.mask_channels = mask_channels
        self.use_timestep = use_timestep
        self.mask_at_input = mask_at_input
        self.sites = {"encoder": mask_in_encoder, "bottleneck": mask_in_bottleneck,
                      "decoder": mask_in_decoder}
        self.shared_mask_embedding = shared_mask_embedding
        has_mask = mask_channels > 0
        width = [base_channels * m for m in channel_mult]
        embed_dim = 4 * base_channels if use_timestep else 0
        if use_timestep:
            self.time_embed = TimestepEmbedding(base_channels)

        def block(cin, cout, modulated):
            return ResBlock3D(cin, cout, embed_dim, mask_channels if has_mask and modulated else 0,
                              modulation_hidden, shared_mask_embedding, groups)

        self.mask_embed = [None] * self.levels
        if has_mask and shared_mask_embedding:
            for level in range(self.levels):
                if mask_in_encoder or mask_in_decoder or (
                        mask_in_bottleneck and level == self.levels - 1):
                    self.mask_embed[level] = MaskEmbedding(mask_channels, modulation_hidden)
                    setattr(self, f"mod_embed{level}", self.mask_embed[level])

        inputs = in_channels + (mask_channels if has_mask and mask_at_input else 0)
        self.in_conv = conv3(inputs, base_channels)
        skips, ch = [base_channels], base_channels
        self.encoder, self.down = [], []
        for level in range(self.levels):
            blocks, attention = [], []
            for i in range(blocks_per_level):
                blocks.append(block(ch, width[level], mask_in_encoder))
                setattr(self, f"enc{level}_block{i}", blocks[-1])
                ch = width[level]
                if level in attention_levels:
                    attention.append(AttentionBlock3D(ch, attention_heads, groups))
                    setattr(self, f"enc{level}_attn{i}", attention[-1])
                skips.append(ch)
            self.encoder.append((blocks, attention))
            if level + 1 < self.levels:
                self.down.append(Downsample3D(ch))
                setattr(self, f"down{level}", self.down[-1])
                skips.append(ch)

        self.mid_block1 = block(ch, ch, mask_in_bottleneck)
        self.mid_attn = AttentionBlock3D(ch, attention_heads, groups) if attention_levels else None
        self.mid_block2 = block(ch, ch, mask_in_bottleneck)

        self.decoder = [None] * self.levels
        self.up = [None] * (self.levels - 1)
        for level in reversed(range(self.levels)):
            blocks, attention = [], []
            for i in range(blocks_per_level + 1):
                skip = skips.pop()
                blocks.append(block(ch + skip, width[level], mask_in_decoder))
                setattr(self, f"dec{level}_block{i}", blocks[-1])
                ch = width[level]
                if level in attention_levels:
                    attention.append(AttentionBlock3D(ch, attention_heads, groups))
                    setattr(self, f"dec{level}_attn{i}", attention[-1])
            self.decoder[level] = (blocks, attention)
            if level > 0:
                self.up[level - 1] = Upsample3D(ch)
                setattr(self, f"up{level}", self.up[level - 1])

        self.out_norm = nn.GroupNorm(groups, ch)
        self.out_conv = conv3(ch, out_channels)

    def _blocks(self):
        """Every ResBlock in forward order with its level and mask site."""
        for level, (blocks, _) in enumerate(self.encoder):
            for blk in blocks:
                yield blk, level, "encoder"
        yield self.mid_block1, self.levels - 1, "bottleneck"
        yield self.mid_block2, self.levels - 1, "bottleneck"
        for level in reversed(range(self.levels)):
            for blk in self.decoder[level][0]:
                yield blk, level, "decoder"

    def condition(self, mask: Optional[torch.Tensor], dtype: torch.dtype,
                  map_budget_bytes: int = 0) -> dict:
        """The mask's part of a forward pass (UNet3DImpl::condition): the mask in `dtype`, its
        per-level versions, and the (scale, shift) maps of the modulated blocks that fit
        `map_budget_bytes` in forward order. A sampler makes it once and reuses it every step."""
        c = {"mask": None, "levels": [None] * self.levels, "maps": {}, "map_bytes": 0}
        if self.mask_channels == 0:
            return c
        if mask is None or mask.dim() != 5 or mask.shape[1] != self.mask_channels:
            raise ValueError(f"UNet3D: needs a [B, {self.mask_channels}, D, H, W] mask on the "
                             f"grid of x")
        m = c["mask"] = mask.to(dtype)
        if not any(self.sites.values()):
            return c
        for level in range(self.levels):
            c["levels"][level] = m if level == 0 else F.avg_pool3d(m, 1 << level)
            if self.shared_mask_embedding:
                embed = self.mask_embed[level]
                c["levels"][level] = None if embed is None else embed(c["levels"][level])
        element = torch.empty((), dtype=dtype).element_size()
        for blk, level, site in self._blocks():
            if map_budget_bytes <= 0 or not self.sites[site] or not blk.modulated:
                continue
            lm = c["levels"][level]
            size = 2 * (blk.cin + blk.cout) * (lm.numel() // lm.size(1)) * element
            if c["map_bytes"] + size > map_budget_bytes:
                continue  # a later, coarser block may still fit
            maps = tuple((scale, shift.contiguous()) for scale, shift in blk.modulation_maps(lm))
            c["maps"][id(blk)] = maps
            c["map_bytes"] += size
        return c

    def forward(self, x: torch.Tensor, t: Optional[torch.Tensor] = None,
                mask: Optional[torch.Tensor] = None, condition: Optional[dict] = None
                ) -> torch.Tensor:
        """With `condition` (from self.condition) instead of `mask`: the same bits."""
        divisor = 1 << (self.levels - 1)
        if x.dim() != 5 or x.size(1) != self.in_channels:
            raise ValueError(f"UNet3D: input must be [B, {self.in_channels}, D, H, W], got "
                             f"{list(x.shape)}")
        if any(s % divisor for s in x.shape[2:]):
            raise ValueError(f"UNet3D: volume {list(x.shape[2:])} not divisible by {divisor}")
        has_mask = self.mask_channels > 0
        if condition is None:
            condition = self.condition(mask, x.dtype)
        m, masks, made = condition["mask"], condition["levels"], condition["maps"]
        if has_mask and (m is None or m.shape[0] != x.shape[0] or m.shape[2:] != x.shape[2:]):
            raise ValueError(f"UNet3D: needs a [B, {self.mask_channels}, D, H, W] mask on the "
                             f"grid of x")
        if self.use_timestep and (t is None or t.dim() != 1 or t.size(0) != x.size(0)):
            raise ValueError("UNet3D: timesteps must be [B]")
        emb = self.time_embed(t, x) if self.use_timestep else None

        def run(blk, h, level, site):
            if not self.sites[site]:
                return blk(h, emb, None)
            return blk(h, emb, masks[level], made.get(id(blk)))

        h = self.in_conv(torch.cat([x, m], 1) if has_mask and self.mask_at_input else x)
        skips = [h]
        for level, (blocks, attention) in enumerate(self.encoder):
            for i, blk in enumerate(blocks):
                h = run(blk, h, level, "encoder")
                if attention:
                    h = attention[i](h)
                skips.append(h)
            if level + 1 < self.levels:
                h = self.down[level](h)
                skips.append(h)
        coarsest = self.levels - 1
        h = run(self.mid_block1, h, coarsest, "bottleneck")
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = run(self.mid_block2, h, coarsest, "bottleneck")
        for level in reversed(range(self.levels)):
            blocks, attention = self.decoder[level]
            for i, blk in enumerate(blocks):
                h = torch.cat([h, skips.pop()], 1)
                h = run(blk, h, level, "decoder")
                if attention:
                    h = attention[i](h)
            if level > 0:
                h = self.up[level - 1](h)
        return self.out_conv(F.silu(self.out_norm(h)))
