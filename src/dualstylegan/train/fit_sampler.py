"""Training the extrinsic style code sampler (paper §3.4; the reference's ``train_sampler.py`` and
``model/sampler/icp.py``).

A style has only a few hundred exemplars; to draw new extrinsic codes, two small MLPs (:class:`StyleSampler`) learn
to map N(0, I₁₂₈) noise onto the bank's structure rows and color rows, by Implicit Maximum Likelihood Estimation:

1. the codes (flattened rows) are augmented to about 1000 by repetition and N(0, 0.05) jitter;
2. every epoch, 2·⌊n/128⌋ batches of noise are mapped by the net, each real code finds its nearest generated
   sample (L2), and the net is regressed (MSE) from that sample's noise onto the real code, in batches of 128 over
   a random permutation of the codes;
3. Adam (β 0.5, 0.999, weight decay 1e-5), lr 1e-3 halved every 50 epochs — a fresh optimiser every epoch, as
   the reference's — for 500000 / n epochs (n the augmented count, so about 500).

Nearest neighbours use ``torch.cdist`` (the reference uses faiss' exact L2 index; same result).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ..codes import CodeBank
from ..nets.dualstylegan import DualStyleGANConfig
from ..nets.sampler import ExtrinsicSampler, SamplerConfig, StyleSampler

log = logging.getLogger(__name__)

#: The reference's recipe.
AUGMENT_TO = 1000
JITTER = 0.05
BATCH_SIZE = 128
LR = 1e-3
BETAS = (0.5, 0.999)
WEIGHT_DECAY = 1e-5
DECAY_EPOCHS = 50
DECAY_RATE = 0.5
EPOCH_BUDGET = 500_000  # epochs = EPOCH_BUDGET / augmented count
NOISE_DIM = 128
HIDDEN_DIM = 128


def _code_tensor(codes: CodeBank | Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
    if isinstance(codes, torch.Tensor):
        t = codes.detach().to(torch.float32)
    else:
        if len(codes) == 0:
            raise ValueError("the code bank is empty; destylize some style images first.")
        t = torch.stack([torch.as_tensor(codes[k], dtype=torch.float32).reshape(-1, codes[k].shape[-1])
                         for k in codes])
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3 or t.shape[0] == 0:
        raise ValueError(f"the codes must be (N, L, 512) Z+ codes, got shape {tuple(t.shape)}")
    return t.cpu()


def augmented_count(n: int, augment_to: int = AUGMENT_TO) -> int:
    """How many codes :func:`augment_codes` makes of ``n``: ⌊augment_to / n⌋·n (at least n)."""
    n = max(1, int(n))
    return max(1, augment_to // n) * n


def augment_codes(codes: torch.Tensor, augment_to: int = AUGMENT_TO, jitter: float = JITTER,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Flattened codes (N, D) → (⌊augment_to / N⌋·N, D) (at least N): repeated, plus N(0, jitter²) noise."""
    base = codes.repeat(augmented_count(codes.shape[0], augment_to) // codes.shape[0], 1)
    return base + jitter * torch.randn(base.shape, generator=generator, dtype=base.dtype)


def default_epochs(n: int) -> int:
    """The reference's epoch count for ``n`` (augmented) codes: int(500000 / n)."""
    return max(1, int(EPOCH_BUDGET / n))


def fit_style_sampler(targets: torch.Tensor, net: StyleSampler, epochs: int, *, batch_size: int = BATCH_SIZE,
                      lr: float = LR, decay_epochs: int = DECAY_EPOCHS, decay_rate: float = DECAY_RATE,
                      generator: torch.Generator | None = None, progress: bool = False,
                      desc: str = "sampler") -> list[float]:
    """IMLE on flattened targets (n, rows·512) for ``net`` in place → mean MSE per epoch. Leaves ``net`` in eval mode.

    ``generator``: a CPU torch.Generator for the noise and permutations (reproducible on any device).
    """
    from tqdm import tqdm

    device = net.lin1.weight.device
    targets = targets.to(device)
    n = targets.shape[0]
    batch_size = min(batch_size, n)
    batch_n = n // batch_size
    noise_dim = net.config.noise_dim
    losses: list[float] = []
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress):
        step_lr = lr * decay_rate ** (epoch // decay_epochs)
        optimizer = torch.optim.Adam(net.parameters(), lr=step_lr, betas=BETAS, weight_decay=WEIGHT_DECAY)
        net.train()
        # Samples of the current net (train mode, as the reference: batch statistics; running stats move too).
        noise = torch.randn(2 * batch_n * batch_size, noise_dim, generator=generator).to(device)
        with torch.no_grad():
            samples = torch.cat([net(e) for e in noise.split(batch_size)])
            nearest = torch.cdist(targets, samples).argmin(dim=1)  # each real code's nearest sample
        order = torch.randperm(n, generator=generator).to(device)
        total = 0.0
        for i in range(batch_n):
            idx = order[i * batch_size:(i + 1) * batch_size]
            loss = F.mse_loss(net(noise[nearest[idx]]), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / max(1, batch_n))
    net.eval()
    return losses


def fit_sampler(codes: CodeBank | Mapping[str, torch.Tensor] | torch.Tensor, epochs: int | None = None,
                seed: int = 0, *, n_structure: int | None = None, augment_to: int = AUGMENT_TO,
                jitter: float = JITTER, batch_size: int = BATCH_SIZE, lr: float = LR,
                device: str | torch.device = "cpu", progress: bool = True) -> ExtrinsicSampler:
    """Train the extrinsic code sampler on a style's Z+ extrinsic codes (the refined bank when there is one) →
    :class:`ExtrinsicSampler` in eval mode, on the CPU (save it with :func:`dualstylegan.official.save_sampler`).

    ``codes``: a :class:`CodeBank` (or dict name → (1, L, 512), or a tensor (N, L, 512)). The structure net learns
    rows 0…``n_structure``−1 (default: DualStyleGAN's structure rows, ``DualStyleGANConfig.n_structure`` = 7), the
    color net the others; both from the same augmented codes. ``epochs`` defaults to
    500000 / (augmented count) (about 500). Everything random follows ``seed``.
    """
    z = _code_tensor(codes)
    if n_structure is None:
        n_structure = DualStyleGANConfig().n_structure
    n_rows, style_dim = z.shape[1], z.shape[2]
    if not 0 < n_structure < n_rows:
        raise ValueError(f"the codes have {n_rows} rows; n_structure={n_structure} leaves no structure or color rows")
    rng = torch.Generator().manual_seed(int(seed))
    augmented = augment_codes(z.reshape(z.shape[0], -1), augment_to, jitter, rng)
    if epochs is None:
        epochs = default_epochs(augmented.shape[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        sampler = ExtrinsicSampler(
            SamplerConfig(rows=n_structure, noise_dim=NOISE_DIM, style_dim=style_dim, hidden_dim=HIDDEN_DIM),
            SamplerConfig(rows=n_rows - n_structure, noise_dim=NOISE_DIM, style_dim=style_dim, hidden_dim=HIDDEN_DIM))
    sampler.to(device)
    split = n_structure * style_dim
    # The reference trains color first, then structure; each part draws from the same seeded stream in turn.
    for part, target in (("color", augmented[:, split:]), ("structure", augmented[:, :split])):
        history = fit_style_sampler(target, getattr(sampler, part), epochs, batch_size=batch_size, lr=lr,
                                    generator=rng, progress=progress, desc=f"{part} sampler")
        if history:
            log.info("%s sampler: MSE %.4f → %.4f over %d epochs", part, history[0], history[-1], epochs)
    return sampler.cpu().eval()


__all__ = ["AUGMENT_TO", "JITTER", "augment_codes", "augmented_count", "default_epochs", "fit_sampler",
           "fit_style_sampler"]
