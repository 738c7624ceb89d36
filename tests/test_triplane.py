"""Tri-plane encoder: known planes give known features; gradients reach the planes and the points."""
from __future__ import annotations

import torch

from gt_core.encoders.triplane import PLANES, TriPlaneConfig, TriPlaneEncoder, normalize_aabb

AABB = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 4.0]])


def encoder(res: int = 8, channels: int = 3, multires=(1, 2)) -> TriPlaneEncoder:
    torch.manual_seed(0)
    return TriPlaneEncoder(AABB, TriPlaneConfig(res, list(multires), channels))


def points_at(normalised: torch.Tensor) -> torch.Tensor:
    """World points whose AABB-normalised coordinates are ``normalised`` [N, 3]."""
    return AABB[0] + (normalised + 1) / 2 * (AABB[1] - AABB[0])


def test_shapes_init_and_normalisation():
    enc = encoder()
    assert enc.out_dim == 6 and len(enc.planes) == 6
    assert [tuple(p.shape) for p in enc.planes] == [(1, 3, 8, 8)] * 3 + [(1, 3, 16, 16)] * 3
    for p in enc.planes:
        assert float(p.min()) >= 0.1 and float(p.max()) <= 0.5
    assert torch.allclose(normalize_aabb(AABB, AABB), torch.tensor([[-1.0] * 3, [1.0] * 3]))
    assert enc(torch.zeros(5, 3)).shape == (5, 6)
    default = TriPlaneEncoder(AABB)
    assert default.out_dim == 64 and tuple(default.planes[3].shape) == (1, 32, 128, 128)


def test_constant_planes_give_product_of_constants_concatenated_by_scale():
    enc = encoder()
    values = [2.0, 3.0, 4.0, 1.0, 0.5, 5.0]  # scale 0: xy, xz, yz; scale 1: xy, xz, yz
    with torch.no_grad():
        for p, v in zip(enc.planes, values):
            p.fill_(v)
    pts = points_at(torch.rand(10, 3) * 2 - 1)
    f = enc(pts)
    assert torch.allclose(f[:, :3], torch.full((10, 3), 24.0))
    assert torch.allclose(f[:, 3:], torch.full((10, 3), 2.5))


def test_linear_ramps_are_interpolated_exactly():
    """align_corners=True: normalised -1 / +1 are the first / last texel centres, so a ramp over texel index i of
    value i/(R-1) reads (u+1)/2 at normalised coordinate u (bilinear is exact on linear functions)."""
    enc = encoder(res=8, channels=2, multires=(1,))
    r = 8
    ramp = torch.arange(r, dtype=torch.float32) / (r - 1)
    with torch.no_grad():
        for p in enc.planes:
            p.fill_(1.0)
        xy, xz, yz = (enc.planes[PLANES.index(pl)] for pl in ((0, 1), (0, 2), (1, 2)))
        xy[0, 0] = ramp[None, :].expand(r, r)  # channel 0 of plane xy varies along x (the grid's width)
        yz[0, 1] = ramp[:, None].expand(r, r)  # channel 1 of plane yz varies along z (the grid's height)
        xz[0, 1] = 2.0
    u = torch.tensor([[-1.0, 0.3, 0.9], [-0.37, -0.8, -1.0], [0.5, 0.1, 0.2], [1.0, 1.0, 0.0]])
    f = enc(points_at(u))
    assert torch.allclose(f[:, 0], (u[:, 0] + 1) / 2, atol=1e-6)
    assert torch.allclose(f[:, 1], 2.0 * (u[:, 2] + 1) / 2, atol=1e-6)


def test_outside_the_box_reads_the_border():
    enc = encoder()
    inside = points_at(torch.tensor([[1.0, 0.2, -1.0]]))
    outside = points_at(torch.tensor([[1.7, 0.2, -3.0]]))
    assert torch.allclose(enc(inside), enc(outside))


def test_gradients_reach_every_plane_and_the_points():
    enc = encoder()
    pts = points_at(torch.rand(32, 3) * 1.8 - 0.9).requires_grad_()
    enc(pts).square().sum().backward()
    for p in enc.planes:
        assert p.grad is not None and float(p.grad.abs().sum()) > 0
    assert pts.grad is not None and float(pts.grad.abs().sum()) > 0
