"""Every loss of the reference training (paper §3.1, §3.3, §3.4; the reference's training scripts), as plain
functions and small modules.

Feature networks are arguments, never loaded here: :class:`~dualstylegan.nets.perceptual.VGG19Features` for the
perceptual, feature-matching and contextual losses, :class:`~dualstylegan.nets.encoder.IdentityNet` (IR-SE50) for
the identity loss. Images are (B, 3, H, W) in [−1, 1]; callers pool them to the loss resolution first
(:func:`pool_to`, :data:`LOSS_SIZE` = 256, as the reference does with ``F.adaptive_avg_pool2d(x, 256)``) — except
:class:`IdentityLoss`, which pools itself (pSp).

Where a loss compares a generated image with a target, the target's side carries no gradient (the reference passes
``real_feats[i].detach()`` / computes them under ``no_grad``).

* adversarial (StyleGAN2, rosinality): :func:`d_logistic_loss`, :func:`g_nonsaturating_loss`, :func:`d_r1_loss`,
  :func:`g_path_regularize`;
* feature losses: :class:`IdentityLoss`, :class:`PerceptualLoss` (:func:`perceptual_l1`),
  :class:`ContextualLoss` (:func:`contextual_loss`), :class:`FeatureMatchingLoss` (:func:`feature_matching`);
* regularisers: :func:`modres_l2` (stage III), :func:`latent_std_regularizer`, :func:`noise_regularize` /
  :func:`noise_normalize_` and the learning-rate schedule :func:`get_lr` (destylization, code refinement).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import autograd, nn

#: VGG19 L1 weights on relu1_1 … relu5_1 of stage II (pre-training on faces) [pretrain_dualstylegan.py].
STAGE2_VGG_WEIGHTS: tuple[float, ...] = (0.5, 0.5, 0.5, 0.0, 0.0)
#: VGG19 L1 weights of stage III's paired steps [finetune_dualstylegan.py ``vgg_weights``].
STAGE3_VGG_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 0.0, 0.0)
#: Indices into VGG19Features' outputs (0 = relu1_1 … 4 = relu5_1) of the feature-matching loss: relu2_1, relu3_1.
FEATURE_MATCHING_LAYERS: tuple[int, ...] = (1, 2)
#: VGG19Features output of the contextual loss: relu3_1.
CONTEXTUAL_LAYER: int = 2
#: Band width h of the contextual loss (stage III and code refinement).
CX_BAND_WIDTH: float = 0.2
#: Images are average-pooled to this size before the VGG / LPIPS / ID losses (the reference's ``(x, 256)`` pools).
LOSS_SIZE = 256

#: The ID loss's face region in a 256² aligned image (rows, columns) [criteria/id_loss.py].
ID_IMAGE_SIZE = 256
ID_CROP = (slice(35, 223), slice(32, 220))
ID_FACE_SIZE = 112

#: Eq. (1)/(5) of the contextual loss: ε of the relative distance and of the log.
CX_EPS = 1e-5


def pool_to(x: torch.Tensor, size: int = LOSS_SIZE) -> torch.Tensor:
    """Average-pool images larger than ``size``² down to it (smaller ones are left as they are)."""
    return F.adaptive_avg_pool2d(x, size) if x.shape[-1] > size or x.shape[-2] > size else x


# --------------------------------------------------------------------------------------------------------------
# Adversarial losses and regularisers (StyleGAN2, rosinality semantics)

def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss of D: mean softplus(−D(x)) + mean softplus(D(G(z)))."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """Non-saturating loss of G: mean softplus(−D(G(z)))."""
    return F.softplus(-fake_pred).mean()


def d_r1_loss(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """R1 penalty: mean over samples of ‖∇ₓ D(x)‖² (squared gradients summed per sample).

    ``real_img`` must require grad and be what ``real_pred`` was computed from (before any augmentation). The
    graph is kept (``create_graph``) so the penalty can be back-propagated into D. The caller weights it
    (γ/2 · R1 · d_reg_every in the lazy schedule).
    """
    (grad,) = autograd.grad(outputs=real_pred.sum(), inputs=real_img, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def g_path_regularize(fake_img: torch.Tensor, latents: torch.Tensor, mean_path_length: float | torch.Tensor,
                      decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Path-length regulariser of StyleGAN2 → ``(path_penalty, new_mean_path_length, path_lengths)``.

    y ~ N(0, I)/sqrt(H·W) (an image-shaped projection); J_wᵀy = ∇_w ⟨G(w), y⟩ with respect to ``latents``
    (B, L, 512), which ``fake_img`` must have been generated from; per sample the length is
    sqrt(mean over the L rows of Σ over the 512 channels of the squared gradient) (a (B, 512) latent counts as
    L = 1). The running mean moves by ``decay`` toward the batch mean (returned detached); the penalty is the mean
    squared deviation of the lengths from it. ``path_lengths`` (B,) is for logging.
    """
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = autograd.grad(outputs=(fake_img * noise).sum(), inputs=latents, create_graph=True)
    sq = grad.pow(2).sum(-1)
    if sq.ndim > 1:
        sq = sq.reshape(sq.shape[0], -1).mean(1)
    path_lengths = torch.sqrt(sq)
    path_mean = mean_path_length + decay * (path_lengths.mean() - mean_path_length)
    path_penalty = (path_lengths - path_mean).pow(2).mean()
    return path_penalty, path_mean.detach(), path_lengths


# --------------------------------------------------------------------------------------------------------------
# Identity loss (ArcFace IR-SE50)

class IdentityLoss(nn.Module):
    """ID loss (paper §3.3, λ_ID) [criteria/id_loss.py]: mean over samples of 1 − ⟨f(ŷ), f(y)⟩.

    f: the image, adaptive-average-pooled to 256² unless it is 256² already, cropped to rows 35:223, columns
    32:220 (the face), average-pooled to the net's input size (112²), through ``id_net`` (whose embeddings are
    already L2-normalised). The target y's embeddings are computed without gradient. The loss lies in [0, 2] and
    is 0 for ŷ = y.

    ``id_net`` is kept in eval mode (BatchNorm running statistics, no dropout) even when this module is put in
    training mode; ``freeze`` (default) also turns off its parameters' gradients.
    """

    def __init__(self, id_net: nn.Module, freeze: bool = True):
        super().__init__()
        self.net = id_net
        config = getattr(id_net, "config", None)
        self.face_size = int(getattr(config, "input_size", ID_FACE_SIZE))
        if freeze:
            self.net.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> "IdentityLoss":
        super().train(mode)
        self.net.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [−1, 1] → identity embeddings (B, 512)."""
        if x.ndim != 4:
            raise ValueError(f"the identity loss takes image batches (B, 3, H, W), got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != (ID_IMAGE_SIZE, ID_IMAGE_SIZE):
            x = F.adaptive_avg_pool2d(x, ID_IMAGE_SIZE)
        x = x[:, :, ID_CROP[0], ID_CROP[1]]
        x = F.adaptive_avg_pool2d(x, self.face_size)
        return self.net(x)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.embed(y).detach()
        return (1 - (self.embed(y_hat) * target).sum(1)).mean()


# --------------------------------------------------------------------------------------------------------------
# VGG19 feature losses

def vgg_features(vgg: nn.Module, x: torch.Tensor, n_layers: int = 5) -> list[torch.Tensor]:
    """The first ``n_layers`` outputs of ``vgg`` (relu1_1 …): a VGG19Features stops early, any other callable
    returning the list of five is cut."""
    from .nets.perceptual import VGG19Features

    if isinstance(vgg, VGG19Features):
        return vgg(x, n_layers=n_layers)
    return list(vgg(x))[:n_layers]


def _sum(terms: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """terms[0] + terms[1] + … (a 0-d zero like ``like`` for no terms)."""
    return sum(terms[1:], terms[0]) if terms else like.new_zeros(())


def perceptual_l1(feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor],
                  weights: Sequence[float]) -> torch.Tensor:
    """Σᵢ wᵢ · L1(φᵢ(x), φᵢ(y)) (mean absolute difference per layer) over the layers with wᵢ > 0; φ(y) detached."""
    terms = [F.l1_loss(fx, fy.detach()) * w for w, fx, fy in zip(weights, feats_x, feats_y) if w > 0]
    return _sum(terms, feats_x[0])


class PerceptualLoss(nn.Module):
    """The reference's VGG L1 loss: Σᵢ wᵢ · L1(φᵢ(x), φᵢ(y)) on relu1_1 … relu5_1 of ``vgg`` [model/vgg.py].

    Stage II uses :data:`STAGE2_VGG_WEIGHTS` (0.5, 0.5, 0.5, 0, 0), stage III's paired steps
    :data:`STAGE3_VGG_WEIGHTS` (0, 0.5, 1, 0, 0). VGG runs only as deep as the last positive weight; y is the
    target (no gradient). ``forward(x, y)`` → scalar; x and y of the same size (pool them to 256 first).
    """

    def __init__(self, vgg: nn.Module, weights: Sequence[float] = STAGE2_VGG_WEIGHTS):
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if not 1 <= len(weights) <= 5 or any(w < 0 for w in weights):
            raise ValueError(f"PerceptualLoss takes 1 to 5 non-negative weights (relu1_1 … relu5_1), got {weights}")
        self.vgg = vgg
        self.weights = weights
        positive = [i for i, w in enumerate(weights) if w > 0]
        self.n_layers = positive[-1] + 1 if positive else 0

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.n_layers == 0:
            return x.new_zeros(())
        with torch.no_grad():
            feats_y = vgg_features(self.vgg, y, self.n_layers)
        return perceptual_l1(vgg_features(self.vgg, x, self.n_layers), feats_y, self.weights)


def contextual_loss(x: torch.Tensor, y: torch.Tensor, band_width: float = CX_BAND_WIDTH,
                    loss_type: str = "cosine") -> torch.Tensor:
    """Contextual loss (Mechrez et al. 2018) between feature maps x, y (N, C, H, W), exactly as the reference's
    ``model/contextual_loss/functional.py`` (cosine distance).

    Both are centred by y's channel mean (taken over the batch and space, dims 0, 2, 3) and L2-normalised along
    channels; d_ij = 1 − cos(x_i, y_j) for positions i of x and j of y (per sample); d̃_ij = d_ij / (min_j d_ij
    + 1e-5); w_ij = exp((1 − d̃_ij)/h); CX_ij = w_ij / Σ_j w_ij; CX = mean_j max_i CX_ij; loss = mean over the
    batch of −log(CX + 1e-5). Identical inputs give ≈ −1e-5 (CX = 1), unrelated ones up to −log(1/P).

    Memory: with P = H·W positions, several (N, P, P) float tensors are kept for backward — for relu3_1 of a 256²
    image P = 64² = 4096, i.e. 64 MiB per tensor per sample (≈ 4–5× that per sample in total). No sub-sampling
    is done (the reference does none).
    """
    if loss_type != "cosine":
        raise ValueError(f"only loss_type='cosine' is implemented (the reference's), got {loss_type!r}")
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"contextual_loss needs two feature maps of one shape (N, C, H, W), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    n, c = x.shape[:2]
    mu = y.mean(dim=(0, 2, 3), keepdim=True)
    xn = F.normalize(x - mu, p=2, dim=1).reshape(n, c, -1)
    yn = F.normalize(y - mu, p=2, dim=1).reshape(n, c, -1)
    dist = 1 - torch.bmm(xn.transpose(1, 2), yn)  # (N, P_x, P_y)
    dist_tilde = dist / (dist.min(dim=2, keepdim=True)[0] + CX_EPS)
    w = torch.exp((1 - dist_tilde) / band_width)
    cx_ij = w / w.sum(dim=2, keepdim=True)
    cx = cx_ij.max(dim=1)[0].mean(dim=1)  # (N,)
    return (-torch.log(cx + CX_EPS)).mean()


class ContextualLoss(nn.Module):
    """:func:`contextual_loss` as a module on **feature maps** (the reference applies it to VGG19 relu3_1,
    :data:`CONTEXTUAL_LAYER`, band width 0.2): ``forward(x_feat, y_feat)``, y the target (detached)."""

    def __init__(self, band_width: float = CX_BAND_WIDTH, loss_type: str = "cosine"):
        super().__init__()
        if loss_type != "cosine":
            raise ValueError(f"only loss_type='cosine' is implemented (the reference's), got {loss_type!r}")
        if band_width <= 0:
            raise ValueError(f"band_width must be positive, got {band_width}")
        self.band_width, self.loss_type = float(band_width), loss_type

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return contextual_loss(x, y.detach(), self.band_width, self.loss_type)

    def extra_repr(self) -> str:
        return f"band_width={self.band_width}, loss_type={self.loss_type!r}"


def feature_matching(feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor],
                     layers: Sequence[int] = FEATURE_MATCHING_LAYERS) -> torch.Tensor:
    """Σ over ``layers`` of MSE(mean_hw φ_l(x), mean_hw φ_l(y)): the feature-matching ("style") loss compares the
    global-average-pooled (adaptive_avg_pool2d(·, 1)) features, i.e. channel means; φ(y) detached."""
    terms = [F.mse_loss(feats_x[i].mean(dim=(2, 3)), feats_y[i].detach().mean(dim=(2, 3))) for i in layers]
    return _sum(terms, feats_x[0])


class FeatureMatchingLoss(nn.Module):
    """Stage III's feature-matching loss (paper §3.3, weight 0.25) [finetune_dualstylegan.py]:
    MSE(GAP(relu2_1(x)), GAP(relu2_1(y))) + MSE(GAP(relu3_1(x)), GAP(relu3_1(y))), GAP = global average pool.
    y is the target (no gradient); x and y may differ in size. The 0.25 weight is the caller's."""

    def __init__(self, vgg: nn.Module, layers: Sequence[int] = FEATURE_MATCHING_LAYERS):
        super().__init__()
        layers = tuple(int(i) for i in layers)
        if not layers or any(not 0 <= i < 5 for i in layers):
            raise ValueError(f"layers must be VGG19Features output indices in 0..4, got {layers}")
        self.vgg, self.layers = vgg, layers
        self.n_layers = max(layers) + 1

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats_y = vgg_features(self.vgg, y, self.n_layers)
        return feature_matching(vgg_features(self.vgg, x, self.n_layers), feats_y, self.layers)


# --------------------------------------------------------------------------------------------------------------
# Regularisers and schedules

def modres_l2(model: nn.Module) -> torch.Tensor:
    """Σ_p ‖p‖₂ over the parameters of the extrinsic path ``model.res`` (the Frobenius norm of each tensor, not
    squared) — stage III's λ_reg · Σ‖p‖ (paper §3.3, Eq. 5). ``model``: a DualStyleGAN (a DDP wrapper's ``.module`` is
    used) or the ``res`` ModuleList itself. The gradient at an all-zero tensor is 0."""
    net = getattr(model, "module", model)
    res = getattr(net, "res", net)
    norms = [torch.linalg.vector_norm(p) for p in res.parameters()]
    if not norms:
        raise ValueError("modres_l2 found no parameters: give a DualStyleGAN (with .res) or its res ModuleList.")
    return torch.stack(norms).sum()


def latent_std_regularizer(z_plus: torch.Tensor) -> torch.Tensor:
    """Destylization's code regulariser, the mean std over the 18 rows (paper §3.1) [destylize.py ``Lreg``]:
    ``z_plus.std(dim=1).mean()`` — the (unbiased) standard deviation across the L rows of a (B, L, 512) Z+ code,
    averaged over samples and channels. It pulls the rows toward one shared z (a plain Z-space code)."""
    if z_plus.ndim != 3:
        raise ValueError(f"latent_std_regularizer takes Z+ codes (B, L, 512), got shape {tuple(z_plus.shape)}")
    return z_plus.std(dim=1).mean()


def noise_regularize(noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """The StyleGAN2 projector's noise regulariser: for each noise map (B, 1, H, W), at every scale from H down to
    8 (2×2 average pooling between scales), add the squared mean of noise·roll(noise, 1 along x) and of
    noise·roll(noise, 1 along y). Small for white noise (≈ 2/(H·W) at full scale for unit variance), large for
    spatially correlated maps (a constant map c adds 2c⁴ per scale); 0 for all-zero maps. Maps of 8² or less
    contribute one scale. Returns a 0-d tensor (zero for an empty list)."""
    if not noises:
        return torch.zeros(())
    loss = 0
    for noise in noises:
        size = noise.shape[2]
        while True:
            loss = (loss + (noise * torch.roll(noise, shifts=1, dims=3)).mean().pow(2)
                    + (noise * torch.roll(noise, shifts=1, dims=2)).mean().pow(2))
            if size <= 8:
                break
            noise = noise.reshape(-1, 1, size // 2, 2, noise.shape[3] // 2, 2).mean(dim=(3, 5))
            size //= 2
    return loss


@torch.no_grad()
def noise_normalize_(noises: Sequence[torch.Tensor]) -> None:
    """In place, after each optimiser step: every noise map ← (map − its mean) / its (unbiased) std."""
    for noise in noises:
        mean, std = noise.mean(), noise.std()
        noise.sub_(mean).div_(std)


def get_lr(t: float, initial_lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The StyleGAN2 projector's learning rate at progress t ∈ [0, 1]: linear warm-up over the first ``rampup``,
    cosine decay to 0 over the last ``rampdown``; ``initial_lr`` in between. get_lr(0) = get_lr(1) = 0."""
    ramp = min(1.0, (1 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / rampup)
    return initial_lr * ramp


__all__ = ["CONTEXTUAL_LAYER", "CX_BAND_WIDTH", "FEATURE_MATCHING_LAYERS", "ID_CROP", "LOSS_SIZE", "STAGE2_VGG_WEIGHTS",
           "STAGE3_VGG_WEIGHTS", "ContextualLoss", "FeatureMatchingLoss", "IdentityLoss", "PerceptualLoss",
           "contextual_loss", "d_logistic_loss", "d_r1_loss", "feature_matching", "g_nonsaturating_loss",
           "g_path_regularize", "get_lr", "latent_std_regularizer", "modres_l2", "noise_normalize_", "noise_regularize",
           "perceptual_l1", "pool_to", "vgg_features"]
