import pytest
import torch

from fada.mixed_supervision import MixedSupervision

LAMBDA, ALPHA, PEAK, DEAD = 0.25, 0.2, 30.0, 100.0


def test_adaptive_weight_shape():
    w = MixedSupervision().weight
    r = torch.tensor([0.0, 1.0, 0.01, 30.0, 65.0, 100.0, 150.0], dtype=torch.float64)
    out = w(r)
    peak = LAMBDA * PEAK**ALPHA
    assert out[0] == 0  # r = 0: nothing to mix in
    assert out[1].item() == pytest.approx(LAMBDA)
    assert out[2].item() == pytest.approx(LAMBDA * 0.01**ALPHA)
    assert out[3].item() == pytest.approx(peak)
    assert out[4].item() == pytest.approx(peak / 2)  # midway between r_peak and r_dead
    assert out[5] == 0 and out[6] == 0


def test_adaptive_is_continuous_at_r_peak():
    w = MixedSupervision().weight
    r = torch.tensor([PEAK - 1e-6, PEAK, PEAK + 1e-6], dtype=torch.float64)
    left, at, right = w(r).tolist()
    assert left == pytest.approx(at, abs=1e-6) and right == pytest.approx(at, abs=1e-6)
    assert w(torch.tensor([PEAK - 1.0])) < w(torch.tensor([PEAK])) > w(torch.tensor([PEAK + 1.0]))


def test_other_modes():
    r = torch.tensor([0.0, 1.0, 30.0, 500.0], dtype=torch.float64)
    assert MixedSupervision(mode="none").weight(r).tolist() == [0.0] * 4
    assert MixedSupervision(mode="fixed").weight(r).tolist() == [LAMBDA] * 4
    unlimited = MixedSupervision(mode="adaptive-unlimited").weight(r)
    torch.testing.assert_close(unlimited, LAMBDA * r**ALPHA)
    assert unlimited[3] > unlimited[2]  # keeps rising past r_peak
    custom = MixedSupervision(mode="adaptive", lambda_gt=1.0, alpha=0.5, r_peak=4.0, r_dead=8.0)
    assert custom.weight(torch.tensor([4.0, 6.0, 9.0])).tolist() == [2.0, 1.0, 0.0]


def test_bad_configuration():
    with pytest.raises(ValueError, match="'none', 'fixed', 'adaptive-unlimited', 'adaptive'"):
        MixedSupervision(mode="adaptve")
    with pytest.raises(ValueError, match="r_peak < r_dead"):
        MixedSupervision(r_peak=100.0, r_dead=30.0)


def test_combine_loss_ratio_and_weight():
    l_distill = torch.tensor([1.0, 2.0, 0.0, 0.5], requires_grad=True)
    l_gt = torch.tensor([1.0, 130.0, 0.0, 15.0], requires_grad=True)
    loss, r, w = MixedSupervision().combine(l_distill, l_gt)
    assert r[0].item() == pytest.approx(1.0) and r[1].item() == pytest.approx(65.0)
    assert r[2] == 0  # 0/0 guarded: no NaN
    assert torch.isfinite(r).all() and not r.requires_grad and not w.requires_grad
    expected_w = torch.tensor([LAMBDA, LAMBDA * PEAK**ALPHA / 2, 0.0, LAMBDA * 30.0**ALPHA])
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(loss, (l_distill + expected_w * l_gt).mean())


def test_gradients_do_not_flow_through_w():
    l_distill = torch.tensor([1.0, 2.0], requires_grad=True)
    l_gt = torch.tensor([1.0, 4.0], requires_grad=True)
    loss, _, w = MixedSupervision(mode="adaptive-unlimited").combine(l_distill, l_gt)
    loss.backward()
    # if w = λ·(L_gt/L_distill)^α were differentiated, these would pick up extra terms
    torch.testing.assert_close(l_distill.grad, torch.full((2,), 0.5))
    torch.testing.assert_close(l_gt.grad, w / 2)
