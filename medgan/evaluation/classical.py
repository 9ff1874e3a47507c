"""Classical augmentation for the evaluation's conventional arms: whole batches in one resampling pass."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

#: Named strengths (``evaluate.classical``). ``mild`` is the default: a fair competitor must not destroy the small
#: structures a 28-px lesion consists of (chosen on validation by ``pipelines/protocol_check.py``; docs/results.md).
STRENGTHS: dict[str, dict] = {
    "mild": {"rotate_deg": {2: 10.0, 3: 5.0}, "scale": 0.05, "translate": 0.05, "elastic_px": 1.0, "p_elastic": 0.3,
             "gamma": (0.8, 1.25), "p_gamma": 0.5, "noise_sd": 0.02, "p_noise": 0.3, "p_flip": 0.5},
    "moderate": {"rotate_deg": {2: 15.0, 3: 10.0}, "scale": 0.1, "translate": 0.08, "elastic_px": 1.5,
                 "p_elastic": 0.5, "gamma": (0.7, 1.5), "p_gamma": 0.5, "noise_sd": 0.03, "p_noise": 0.5,
                 "p_flip": 0.5},
}


def classical_augment(strength: str, spatial_dims: int, generator: torch.Generator) -> ClassicalAugment:
    """A :class:`ClassicalAugment` with the parameters of a named strength (:data:`STRENGTHS`)."""
    from medgan.errors import ConfigError

    if strength not in STRENGTHS:
        raise ConfigError(f"unknown classical augmentation strength '{strength}'; use one of {', '.join(STRENGTHS)}")
    kw = dict(STRENGTHS[strength])
    kw["rotate_deg"] = kw["rotate_deg"][spatial_dims]
    return ClassicalAugment(spatial_dims, generator, **kw)


class ClassicalAugment:
    """Classical augmentation of whole batches in one resampling pass (2D and 3D).

    Per sample, independently (defaults = ``moderate``; ``mild`` in :data:`STRENGTHS`): a left-right flip
    (p=0.5); an affine transform (rotation up to ±15° in 2D, ±10° about each axis in 3D; isotropic scale 0.9-1.1;
    translation up to ±8% of the size); with p=0.5 a smooth elastic displacement (random vectors on a 4-point
    control grid, bicubic/trilinear upsampled, up to ~1.5 px); with p=0.5 a gamma contrast change (gamma in
    [0.7, 1.5], as ``RandAdjustContrast``); with p=0.5 Gaussian noise (sd 0.03 of the [-1, 1] range, as
    ``RandGaussianNoise``). The geometric part is one dense displacement field
    applied with MONAI's :class:`~monai.networks.blocks.Warp` (border padding), so a batch costs one
    ``grid_sample`` instead of a per-sample transform chain. All randomness comes from ``generator``.
    """

    def __init__(self, spatial_dims: int, generator: torch.Generator, rotate_deg: float | None = None,
                 scale: float = 0.1, translate: float = 0.08, elastic_px: float = 1.5, p_elastic: float = 0.5,
                 gamma: tuple[float, float] = (0.7, 1.5), p_gamma: float = 0.5, noise_sd: float = 0.03,
                 p_noise: float = 0.5, p_flip: float = 0.5):
        from monai.networks.blocks import Warp

        self.dims = spatial_dims
        self.g = generator
        self.rotate = math.radians(rotate_deg if rotate_deg is not None else (15.0 if spatial_dims == 2 else 10.0))
        self.scale, self.translate = scale, translate
        self.elastic_px, self.p_elastic = elastic_px, p_elastic
        self.gamma, self.p_gamma = gamma, p_gamma
        self.noise_sd, self.p_noise, self.p_flip = noise_sd, p_noise, p_flip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.warp = Warp(mode="bilinear", padding_mode="border")

    def _u(self, *shape: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
        return torch.rand(*shape, generator=self.g) * (hi - lo) + lo

    def _rotation(self, n: int) -> torch.Tensor:
        if self.dims == 2:
            a = self._u(n) * self.rotate
            c, s = torch.cos(a), torch.sin(a)
            return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        r = torch.eye(3).repeat(n, 1, 1)
        for axes in ((1, 2), (0, 2), (0, 1)):
            a = self._u(n) * self.rotate
            m = torch.eye(3).repeat(n, 1, 1)
            i, j = axes
            m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)
            r = m @ r
        return r

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, d = x.shape[0], self.dims
        spatial = x.shape[2:]
        dev = x.device
        # flips along the last spatial axis (left-right)
        flip = torch.rand(n, generator=self.g) < self.p_flip
        x = torch.where(flip.to(dev).view(n, *([1] * (x.ndim - 1))), x.flip(-1), x)
        # affine part of the displacement field, about the image centre, in voxels
        a = self._rotation(n) * self._u(n, lo=1 - self.scale, hi=1 + self.scale).view(n, 1, 1)
        t = self._u(n, d) * self.translate * torch.tensor([float(s) for s in spatial])
        coords = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) - (s - 1) / 2 for s in spatial],
                                            indexing="ij"))  # (d, *spatial)
        flat = coords.reshape(d, -1)
        ddf = (torch.einsum("nij,jp->nip", a - torch.eye(d), flat) + t.unsqueeze(-1)).reshape(n, d, *spatial)
        # smooth elastic part
        use_el = (torch.rand(n, generator=self.g) < self.p_elastic).float().view(n, 1, *([1] * d))
        ctrl = self._u(n, d, *([4] * d)) * self.elastic_px
        mode = "bicubic" if d == 2 else "trilinear"
        ddf = ddf + F.interpolate(ctrl, size=tuple(spatial), mode=mode, align_corners=True) * use_el
        x = self.warp(x, ddf.to(dev))
        # intensity: gamma contrast (on [0, 1]) and Gaussian noise
        shape = (n, *([1] * (x.ndim - 1)))
        gam = torch.where(torch.rand(n, generator=self.g) < self.p_gamma,
                          self._u(n, lo=self.gamma[0], hi=self.gamma[1]), torch.ones(n)).view(shape).to(dev)
        x = ((x.clamp(-1, 1) + 1) / 2).pow(gam) * 2 - 1
        use_noise = (torch.rand(n, generator=self.g) < self.p_noise).float().view(shape).to(dev)
        noise = torch.randn(x.shape, generator=self.g).to(dev) * self.noise_sd
        return (x + noise * use_noise).clamp(-1, 1)
