"""lesion-ddpm's seeding (core/Rng.h): every random stream is derived from the user's --seed and
integers naming its purpose, never from the rank. `lddpm sample` draws case C's noise from a CPU
generator seeded with derive_seed(seed, SAMPLING, [name_key(C)]), so the same call here draws the
same noise (torch's CPU generator is the same engine in LibTorch and in Python's torch)."""
from typing import Iterable

import torch

MASK64 = (1 << 64) - 1
SAMPLING = 7  # core::RngStream::Sampling; the number is part of the derivation


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def derive_seed(seed: int, stream: int, keys: Iterable[int] = ()) -> int:
    h = splitmix64((seed & MASK64) ^ splitmix64(stream))
    for k in keys:
        h = splitmix64(h ^ splitmix64((k + 0x632BE59BD9B4E019) & MASK64))
    return h


def name_key(name: str) -> int:
    """FNV-1a of the UTF-8 bytes of a case id."""
    h = 0xCBF29CE484222325
    for byte in name.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def case_generator(seed: int, case_id: str) -> torch.Generator:
    """The generator `lddpm sample --seed SEED` draws case `case_id`'s noise from."""
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(seed, SAMPLING, [name_key(case_id)]))
    return g
