"""``segakit.core.autoencoder.autoencoder_round_trip``: batched, in [0, 1], and it keeps no autograd graph (the
full-size quality table round-trips 2,000 images; with the graphs alive it ran out of 24 GB)."""

import torch
from tiny_models import _vae


def test_round_trip_is_batched_bounded_and_keeps_no_graph():
    from segakit.core.autoencoder import autoencoder_round_trip

    vae = _vae()
    assert all(p.requires_grad for p in vae.parameters())  # as loaded pipelines leave them
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = autoencoder_round_trip(vae, images, batch=2)
    assert out.shape == images.shape and not out.requires_grad and out.grad_fn is None
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.allclose(
        out, autoencoder_round_trip(vae, images, batch=5), atol=1e-5
    )  # batching changes last bits only
