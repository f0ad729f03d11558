import math

import torch
import torch.nn.functional as F

from vae_cli.objectives import Bernoulli, Gaussian, kl_to_standard_normal, log_normal


def test_bernoulli_nll_by_hand():
    # x = (1, 0), p = (sigmoid(0), sigmoid(ln 3)) = (1/2, 3/4): -log(1/2) - log(1/4) = log 8
    nll = Bernoulli().nll(torch.tensor([[0.0, math.log(3)]]), torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(nll, torch.tensor([math.log(8)]))


def test_gaussian_nll_by_hand():
    nll = Gaussian(0.1, learn_scale=False).nll(torch.tensor([[0.3]]), torch.tensor([[0.5]]))
    expected = 0.5 * 2.0 ** 2 + math.log(0.1) + 0.5 * math.log(2 * math.pi)
    assert torch.allclose(nll, torch.tensor([expected]))


def test_kl_by_hand_and_zero_at_the_prior():
    # m = 1, s = ln 2: ½(4 - 1 - 2 ln 2 + 1) = 2 - ln 2
    assert math.isclose(float(kl_to_standard_normal(torch.tensor(1.0), torch.tensor(math.log(2)))),
                        2 - math.log(2), rel_tol=1e-6)
    assert float(kl_to_standard_normal(torch.tensor(0.0), torch.tensor(0.0))) == 0.0


def test_kl_matches_monte_carlo_expectation():
    torch.manual_seed(0)
    mean, log_scale = torch.tensor([0.7, -1.2]), torch.tensor([-0.5, 0.3])
    z = mean + log_scale.exp() * torch.randn(200_000, 2)
    monte_carlo = (log_normal(z, mean, log_scale) - log_normal(z, torch.zeros(2), torch.zeros(2))).mean()
    assert math.isclose(float(monte_carlo), float(kl_to_standard_normal(mean, log_scale).sum()), abs_tol=0.01)


def test_kl_grows_without_bound_as_the_noise_collapses():
    values = [float(kl_to_standard_normal(torch.tensor(0.0), torch.tensor(s))) for s in (-1.0, -5.0, -20.0)]
    assert values[0] < values[1] < values[2] and values[2] > 18


def test_bernoulli_nll_matches_pytorch_in_value_and_gradient():
    torch.manual_seed(0)
    logits = (5 * torch.randn(16, 1, 28, 28, dtype=torch.float64)).requires_grad_()
    x = torch.rand(16, 1, 28, 28, dtype=torch.float64)
    ours = Bernoulli().nll(logits, x)
    reference = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    assert torch.allclose(ours, reference, atol=1e-9)
    weights = torch.rand(16, dtype=torch.float64)
    (our_grad,) = torch.autograd.grad((ours * weights).sum(), logits)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), logits)
    assert torch.allclose(our_grad, reference_grad, atol=1e-12)
    extreme = torch.tensor([[-100.0, 100.0, 0.0]])
    assert torch.isfinite(Bernoulli().nll(extreme, torch.tensor([[1.0, 0.0, 1.0]]))).all()


def test_likelihoods_broadcast_sample_dimensions_against_the_batch():
    # `vae eval` decodes k samples per image into (k, batch, C, H, W) and scores them against
    # the batch itself: the same numbers as scoring k stacked copies of the batch.
    torch.manual_seed(0)
    outputs = torch.randn(3, 5, 1, 4, 4, dtype=torch.float64)
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.3, dtype=torch.float64))
    for likelihood in (Bernoulli(), Gaussian(0.3, learn_scale=False)):
        broadcast = likelihood.nll(outputs, x)
        stacked = likelihood.nll(outputs.flatten(0, 1), x.repeat(3, 1, 1, 1)).view(3, 5)
        assert broadcast.shape == (3, 5)
        assert torch.allclose(broadcast, stacked, atol=1e-12)
    logits = outputs.clone().requires_grad_()
    (grad,) = torch.autograd.grad(Bernoulli().nll(logits, x).sum(), logits)
    assert torch.allclose(grad, torch.sigmoid(outputs) - x, atol=1e-12)
