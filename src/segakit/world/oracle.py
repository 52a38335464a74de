"""The attribute oracle: a small CNN with one head per attribute that reads 64x64 faces.

It is trained (``python -m segakit.train.oracle``) on renders passed through :func:`augment` -- noise, blur,
colour jitter and slight warps, and a hook for the embedded model's autoencoder round trip -- so that it also
reads generated images. Shipped weights: ``segakit/assets/oracle/oracle.safetensors`` (fp16).

>>> from segakit.world.oracle import Oracle
>>> oracle = Oracle.load()
>>> oracle.predict([image])        # [{"presentation": "woman", "glasses": True, ...}]
>>> oracle.probabilities([image])  # {"glasses": tensor (N, 2), ...}, value order as in ATTRIBUTES
>>> oracle.features([image])       # (N, 256): for Frechet distances

``hair_color`` is meaningless on a bald head: it is trained and scored only where ``hair_style != "bald"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from segakit.core.errors import UserError
from segakit.world.schema import ATTRIBUTES, BINARY

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "oracle" / "oracle.safetensors"
IGNORE = -100


@dataclass
class OracleConfig:
    widths: tuple[int, ...] = (24, 32, 64, 128)
    feature_dim: int = 256
    dropout: float = 0.1


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class OracleNet(nn.Module):
    """64x64 -> conv stem -> three stride-2 stages (32, 16, 8) -> 4x4 pool -> features -> one head per attribute."""

    def __init__(self, config: OracleConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or OracleConfig()
        w = c.widths
        layers = [_conv(3, w[0])]
        for cin, cout in zip(w[:-1], w[1:]):
            layers += [_conv(cin, cout, 2), _conv(cout, cout)]
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(w[-1] * 16, c.feature_dim), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(c.dropout)
        self.heads = nn.ModuleDict({a: nn.Linear(c.feature_dim, len(v)) for a, v in ATTRIBUTES.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.body((x - 0.5) / 0.25)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.drop(self.features(x))
        return {a: head(f) for a, head in self.heads.items()}


# ------------------------------------------------------------------------------------------ targets
def encode_labels(labels: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Label dicts -> class indices per attribute; hair_color is IGNORE where the hair is bald."""
    out = {}
    for a, values in ATTRIBUTES.items():
        idx = [values.index(lab[a]) for lab in labels]
        if a == "hair_color":
            idx = [IGNORE if lab["hair_style"] == "bald" else i for i, lab in zip(idx, labels)]
        out[a] = torch.tensor(idx, dtype=torch.long)
    return out


def to_tensor(images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
    """PIL images or an (N,3,H,W) tensor in [0,1] -> float (N,3,64,64); other sizes are resized (antialiased)."""
    if isinstance(images, torch.Tensor):
        x = images.float()
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3:
            raise UserError(f"Expected images as an (N, 3, H, W) tensor, got shape {tuple(images.shape)}.")
    else:
        if len(images) == 0:
            raise UserError("Expected at least one image, got an empty list.")
        arrs = []
        for im in images:
            im = im.convert("RGB")
            if im.size != (64, 64):
                im = im.resize((64, 64), Image.Resampling.BOX)
            arrs.append(np.asarray(im))
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (64, 64):
        x = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


# ------------------------------------------------------------------------------------- augmentation
@dataclass
class AugmentConfig:
    """Degradations that mimic generated images. Each applies to a share ``p_*`` of the batch."""

    p_color: float = 0.8
    brightness: float = 0.08
    contrast: float = 0.1
    saturation: float = 0.15
    channel_gain: float = 0.03
    p_warp: float = 0.7
    rotate_deg: float = 4.0
    scale: float = 0.05
    translate_px: float = 2.0
    shear: float = 0.03
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    p_noise: float = 0.7
    noise_std: float = 0.04
    p_autoencoder: float = 0.5


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    config: AugmentConfig | None = None,
    autoencoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Degrade a batch (N,3,64,64) in [0,1]. ``autoencoder`` (images -> reconstructed images) is the hook for
    the embedded model's VAE round trip; when given it is applied to a share ``p_autoencoder`` of the batch."""
    c = config or AugmentConfig()
    n = x.shape[0]
    g = generator

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    def pick(p):
        return (rand(n) < p).float().view(n, 1, 1, 1)

    if autoencoder is not None and c.p_autoencoder > 0:
        m = pick(c.p_autoencoder)
        with torch.no_grad():
            x = m * autoencoder(x).clamp(0, 1) + (1 - m) * x

    # colour jitter
    m = pick(c.p_color)
    b = 1 + c.brightness * (2 * rand(n, 1, 1, 1) - 1)
    ct = 1 + c.contrast * (2 * rand(n, 1, 1, 1) - 1)
    s = 1 + c.saturation * (2 * rand(n, 1, 1, 1) - 1)
    gain = 1 + c.channel_gain * (2 * rand(n, 3, 1, 1) - 1)
    y = x * b
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * ct + mean
    gray = 0.299 * y[:, 0:1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3]
    y = (y - gray) * s + gray
    y = y * gain
    x = m * y + (1 - m) * x

    # slight affine warp
    m = pick(c.p_warp)
    ang = math.radians(c.rotate_deg) * (2 * rand(n) - 1) * m.view(n)
    sc = 1 + c.scale * (2 * rand(n) - 1) * m.view(n)
    sh = c.shear * (2 * rand(n) - 1) * m.view(n)
    t = (c.translate_px / 32) * (2 * rand(n, 2) - 1) * m.view(n, 1)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin + sh, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # gaussian blur with a per-image sigma (5-tap separable kernels, grouped convolution)
    m = pick(c.p_blur).view(n)
    lo, hi = c.blur_sigma
    sigma = (lo + (hi - lo) * rand(n)).clamp_min(1e-3)
    taps = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)
    ident = torch.zeros(5)
    ident[2] = 1
    k = m[:, None] * k + (1 - m[:, None]) * ident
    k = k.repeat_interleave(3, 0)  # (3n, 5)
    z = x.reshape(1, 3 * n, 64, 64)
    z = F.conv2d(F.pad(z, (2, 2, 0, 0), mode="replicate"), k.view(3 * n, 1, 1, 5), groups=3 * n)
    z = F.conv2d(F.pad(z, (0, 0, 2, 2), mode="replicate"), k.view(3 * n, 1, 5, 1), groups=3 * n)
    x = z.view(n, 3, 64, 64)

    # sensor-like noise
    m = pick(c.p_noise)
    std = c.noise_std * rand(n, 1, 1, 1)
    x = x + m * std * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1)


# ------------------------------------------------------------------------------------------- oracle
class Oracle:
    """A trained :class:`OracleNet` with convenience methods over PIL images or tensors."""

    def __init__(self, net: OracleNet, device: str | torch.device = "cpu", batch_size: int = 256) -> None:
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> Oracle:
        """Load oracle weights (safetensors only); ``None`` means the weights shipped with segakit."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path) if path is not None else DEFAULT_WEIGHTS
        if path.suffix != ".safetensors":
            raise UserError(
                f"Oracle weights must be a .safetensors file (pickle checkpoints can run code), got {str(path)!r}."
            )
        if not path.is_file():
            raise UserError(
                f"Oracle weights {str(path)!r} do not exist; train them with `python -m segakit.train.oracle`."
            )
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        cfg = json.loads(meta.get("config", "{}"))
        attrs = json.loads(meta.get("attributes", "null"))
        if attrs is not None and attrs != {a: [v for v in vals] for a, vals in ATTRIBUTES.items()}:
            raise UserError(f"Oracle weights {str(path)!r} were trained for another attribute schema; retrain them.")
        config = OracleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        net = OracleNet(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        net.load_state_dict(state)
        return cls(net, device)

    def save(self, path: str | Path, half: bool = True) -> None:
        """Write the weights (fp16 by default) with the architecture and schema in the metadata."""
        from safetensors.torch import save

        from segakit.core.atomic import atomic_open

        state = {
            k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
            for k, v in self.net.state_dict().items()
        }
        meta = {
            "config": json.dumps(asdict(self.net.config)),
            "attributes": json.dumps({a: list(v) for a, v in ATTRIBUTES.items()}),
        }
        with atomic_open(path, "wb") as fh:
            fh.write(save(state, metadata=meta))

    @torch.no_grad()
    def _run(self, images, fn):
        x = to_tensor(images)
        outs = [fn(x[i : i + self.batch_size].to(self.device)) for i in range(0, x.shape[0], self.batch_size)]
        return outs

    def logits(self, images: Sequence[Image.Image] | torch.Tensor) -> dict[str, torch.Tensor]:
        outs = self._run(images, self.net)
        return {a: torch.cat([o[a] for o in outs]).cpu() for a in ATTRIBUTES}

    def probabilities(self, images: Sequence[Image.Image] | torch.Tensor) -> dict[str, torch.Tensor]:
        """``{attribute: (N, n_values)}`` softmax probabilities, columns in :data:`ATTRIBUTES` order."""
        return {a: v.softmax(-1) for a, v in self.logits(images).items()}

    def features(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """(N, 256) penultimate features (for Frechet distances between image sets)."""
        return torch.cat(self._run(images, self.net.features)).cpu()

    def predict(self, images: Sequence[Image.Image] | torch.Tensor) -> list[dict[str, str | bool]]:
        """One label dict per image, in the public vocabulary (binary attributes as booleans)."""
        return decode(self.probabilities(images))


def decode(probs: dict[str, torch.Tensor]) -> list[dict[str, str | bool]]:
    idx = {a: p.argmax(-1).tolist() for a, p in probs.items()}
    n = len(next(iter(idx.values())))
    return [
        {a: (bool(ATTRIBUTES[a][idx[a][i]]) if a in BINARY else ATTRIBUTES[a][idx[a][i]]) for a in ATTRIBUTES}
        for i in range(n)
    ]


def accuracy(pred: Sequence[dict], truth: Sequence[dict]) -> dict[str, float]:
    """Share correct per attribute; hair_color only where the true hair_style is not bald."""
    out = {}
    for a in ATTRIBUTES:
        pairs = [(p[a], t[a]) for p, t in zip(pred, truth) if not (a == "hair_color" and t["hair_style"] == "bald")]
        out[a] = sum(p == t for p, t in pairs) / len(pairs) if pairs else float("nan")
    return out


def held_out_accuracy(
    oracle: Oracle,
    n: int = 2000,
    seed: int = 777_001,
    augmented: bool = True,
    on_item: Callable[[int], None] | None = None,
    autoencoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, dict[str, float]]:
    """Accuracy on ``n`` fresh renders of ``seed``: clean, after :func:`augment` if ``augmented``, and after
    the ``autoencoder`` round trip alone if one is given (how generated images look at best)."""
    from segakit.world.dataset import samples

    imgs, labels = [], []
    for k, s in enumerate(samples(n, seed)):
        imgs.append(np.asarray(s.image))
        labels.append(s.face.labels())
        if on_item:
            on_item(k + 1)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    result = {"clean": accuracy(oracle.predict(x), labels)}
    if augmented:
        g = torch.Generator().manual_seed(seed)
        xa = torch.cat([augment(x[i : i + 256], g) for i in range(0, n, 256)])
        result["augmented"] = accuracy(oracle.predict(xa), labels)
    if autoencoder is not None:
        xr = torch.cat([autoencoder(x[i : i + 256]).clamp(0, 1) for i in range(0, n, 256)])
        result["autoencoder"] = accuracy(oracle.predict(xr), labels)
    return result
