"""Configs are data: a dataclass per network, saved as JSON next to the weights and read back."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T", bound="NetConfig")


def default_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """The official StyleGAN2 channel table {resolution: channels}."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
            1024: 16 * cm}


@dataclasses.dataclass
class NetConfig:
    """Base: JSON round trip (tuples become lists, int dict keys become strings and back)."""

    def to_dict(self) -> dict[str, Any]:
        def plain(v):
            if isinstance(v, dict):
                return {str(k): plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return v
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        return cls(**d)


@dataclasses.dataclass
class StyleGANShape(NetConfig):
    """Resolution and channel table shared by the generator, DualStyleGAN and the discriminator."""

    size: int = 1024
    channel_multiplier: int = 2
    channels: dict[int, int] | None = None  # overrides the official table (narrow test models)
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)

    def __post_init__(self):
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        if self.channels is not None:
            self.channels = {int(k): int(v) for k, v in self.channels.items()}
            missing = [r for r in (2 ** i for i in range(2, self.log_size + 1)) if r not in self.channels]
            if missing:
                raise ValueError(f"the channel table has no entry for resolution(s) {missing}")
        self.blur_kernel = tuple(self.blur_kernel)

    @property
    def channel_table(self) -> dict[int, int]:
        return self.channels if self.channels is not None else default_channels(self.channel_multiplier)

    @property
    def log_size(self) -> int:
        return self.size.bit_length() - 1

    @property
    def n_latent(self) -> int:
        """Number of style rows (18 at 1024²)."""
        return self.log_size * 2 - 2

    @property
    def num_layers(self) -> int:
        return (self.log_size - 2) * 2 + 1
