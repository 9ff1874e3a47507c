"""Classical augmentation (the conventional arms of an evaluation, and the teacher): whole batches in one resampling
pass."""

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

    def draw(self, x_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """Every random number one call on a batch of ``x_shape`` uses, in the order the generator gives them."""
        n, d = x_shape[0], self.dims
        spatial = x_shape[2:]
        r: dict[str, torch.Tensor] = {"flip": torch.rand(n, generator=self.g) < self.p_flip}
        r["affine"] = self._rotation(n) * self._u(n, lo=1 - self.scale, hi=1 + self.scale).view(n, 1, 1)
        r["shift"] = self._u(n, d) * self.translate * torch.tensor([float(s) for s in spatial])
        r["use_elastic"] = (torch.rand(n, generator=self.g) < self.p_elastic).float().view(n, 1, *([1] * d))
        r["ctrl"] = self._u(n, d, *([4] * d)) * self.elastic_px
        r["gamma"] = torch.where(torch.rand(n, generator=self.g) < self.p_gamma,
                                 self._u(n, lo=self.gamma[0], hi=self.gamma[1]), torch.ones(n))
        r["use_noise"] = (torch.rand(n, generator=self.g) < self.p_noise).float()
        r["noise"] = torch.randn(x_shape, generator=self.g) * self.noise_sd
        return r

    def apply(self, x: torch.Tensor, r: dict[str, torch.Tensor]) -> torch.Tensor:
        """The augmentation of ``x`` with the random numbers ``r`` (:meth:`draw`); per sample, so the draws of
        several batches concatenated along the batch axis augment those batches concatenated, in one pass."""
        n, d = x.shape[0], self.dims
        spatial = x.shape[2:]
        dev = x.device
        # flips along the last spatial axis (left-right)
        x = torch.where(r["flip"].to(dev).view(n, *([1] * (x.ndim - 1))), x.flip(-1), x)
        # affine part of the displacement field, about the image centre, in voxels; then the smooth elastic part
        coords = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) - (s - 1) / 2 for s in spatial],
                                            indexing="ij"))  # (d, *spatial)
        flat = coords.reshape(d, -1)
        ddf = (torch.einsum("nij,jp->nip", r["affine"] - torch.eye(d), flat)
               + r["shift"].unsqueeze(-1)).reshape(n, d, *spatial)
        mode = "bicubic" if d == 2 else "trilinear"
        ddf = ddf + F.interpolate(r["ctrl"], size=tuple(spatial), mode=mode, align_corners=True) * r["use_elastic"]
        x = self.warp(x, ddf.to(dev))
        # intensity: gamma contrast (on [0, 1]) and Gaussian noise
        shape = (n, *([1] * (x.ndim - 1)))
        x = ((x.clamp(-1, 1) + 1) / 2).pow(r["gamma"].view(shape).to(dev)) * 2 - 1
        return (x + r["noise"].to(dev) * r["use_noise"].view(shape).to(dev)).clamp(-1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x, self.draw(tuple(x.shape)))

    @staticmethod
    def apply_group(augs: list[ClassicalAugment], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """What :func:`medgan.classify.fit.fit_group` calls for a stacked group: :func:`augment_group`."""
        return augment_group(augs, xs)


def augment_group(augs: list[ClassicalAugment], xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[aug(x) for aug, x in zip(augs, xs)]`` in one resampling pass: each augmentation draws from its own
    generator exactly what it would alone, and the batches are augmented together."""
    draws = [a.draw(tuple(x.shape)) for a, x in zip(augs, xs, strict=True)]
    joint = {k: torch.cat([r[k] for r in draws]) for k in draws[0]}
    out = augs[0].apply(torch.cat(xs), joint)
    return list(out.split([len(x) for x in xs]))
