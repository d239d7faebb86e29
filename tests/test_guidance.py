import pytest
import torch

from fada.guidance import NFECounter, cfg_embedding, multi_cfg, split_cfg_batch


def test_multi_cfg_by_hand():
    eps_ra, eps_r, eps_none = torch.full((1, 2), 3.0), torch.full((1, 2), 2.0), torch.full((1, 2), 1.0)
    # 1 + 2.5·(2 − 1) + 6.5·(3 − 2) = 10
    assert torch.equal(multi_cfg(eps_ra, eps_r, eps_none, s_r=2.5, s_a=6.5), torch.full((1, 2), 10.0))
    eps_ra, eps_r, eps_none = torch.tensor([[0.5]]), torch.tensor([[-1.0]]), torch.tensor([[2.0]])
    # 2 + 2·(−1 − 2) + 4·(0.5 + 1) = 2 − 6 + 6 = 2
    assert multi_cfg(eps_ra, eps_r, eps_none, s_r=2.0, s_a=4.0).item() == pytest.approx(2.0)


def test_multi_cfg_per_sample_scales_select_each_prediction():
    gen = torch.Generator().manual_seed(0)
    eps_ra, eps_r, eps_none = (torch.randn(3, 2, 4, 4, generator=gen) for _ in range(3))
    s_r, s_a = torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0.0, 0.0, 1.0])
    out = multi_cfg(eps_ra, eps_r, eps_none, s_r, s_a)
    torch.testing.assert_close(out[0], eps_none[0])  # no guidance: unconditional
    torch.testing.assert_close(out[1], eps_r[1])  # s_r = 1, s_a = 0: reference only
    torch.testing.assert_close(out[2], eps_ra[2])  # both 1: fully conditional


def test_multi_cfg_equals_rewritten_form():
    gen = torch.Generator().manual_seed(1)
    eps_ra, eps_r, eps_none = (torch.randn(2, 3, 2, 5, 5, generator=gen) for _ in range(3))
    s_r, s_a = torch.tensor([2.5, 2.0]), torch.tensor([6.5, 5.0])
    rewritten = torch.stack(
        [s_a[i] * eps_ra[i] + (s_r[i] - s_a[i]) * eps_r[i] + (1 - s_r[i]) * eps_none[i] for i in range(2)]
    )
    torch.testing.assert_close(multi_cfg(eps_ra, eps_r, eps_none, s_r, s_a), rewritten)


def test_split_cfg_batch_order():
    a, b, c = torch.zeros(2, 3), torch.ones(2, 3), torch.full((2, 3), 2.0)
    ra, r, none = split_cfg_batch(torch.cat([a, b, c]))
    assert torch.equal(ra, a) and torch.equal(r, b) and torch.equal(none, c)
    assert len(split_cfg_batch(torch.zeros(4, 1), n=2)) == 2
    with pytest.raises(ValueError, match="3 CFG passes"):
        split_cfg_batch(torch.zeros(7, 3))


def test_cfg_embedding_formula_and_shape():
    gen = torch.Generator().manual_seed(2)
    t_ra, t_r, t_none = (torch.randn(4, 8, generator=gen, requires_grad=True) for _ in range(3))
    s_a, s_r = torch.tensor([6.5, 1.0, 3.0]), torch.tensor([2.5, 1.0, 0.0])
    e = cfg_embedding(t_ra, t_r, t_none, s_a, s_r)
    assert e.shape == (3, 4, 8)
    for i in range(3):
        expected = s_a[i] * t_ra + (s_r[i] - s_a[i]) * t_r + (1 - s_r[i]) * t_none
        torch.testing.assert_close(e[i], expected)
    torch.testing.assert_close(e[1], t_ra)  # s_a = s_r = 1 → the (r,a) tokens alone
    torch.testing.assert_close(e[2], 3 * t_ra - 3 * t_r + t_none)
    e.sum().backward()
    assert t_ra.grad is not None and t_r.grad is not None and t_none.grad is not None


def test_cfg_embedding_mirrors_eq9():
    """The embedding is eq. 9 applied to the token sets (the point of step 8)."""
    gen = torch.Generator().manual_seed(3)
    t_ra, t_r, t_none = (torch.randn(2, 4, generator=gen) for _ in range(3))
    s_a, s_r = torch.tensor([6.5, 4.0]), torch.tensor([2.5, 1.5])
    stack = lambda x: x.expand(2, 2, 4)  # noqa: E731
    torch.testing.assert_close(
        cfg_embedding(t_ra, t_r, t_none, s_a, s_r), multi_cfg(stack(t_ra), stack(t_r), stack(t_none), s_r, s_a)
    )


def test_nfe_counter():
    counter = NFECounter()
    for _ in range(25):
        counter.add(3)  # teacher: 25 DDIM steps, 3 CFG passes batched
    assert counter.total == 75 and counter.calls == 25
    counter.reset()
    for _ in range(6):
        counter.add(3)
    assert counter.total == 18
    counter.reset()
    for _ in range(6):
        counter.add()
    assert counter.total == 6 and counter.calls == 6
