"""tcvae: beta-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"). The
ELBO's KL, averaged over the data, splits into three parts:

  E[log q(z|x) − log p(z)] =  E[log q(z|x) − log q(z)]         index-code mutual information
                            + E[log q(z) − Σ_d log q(z_d)]      total correlation of the code
                            + E[Σ_d log q(z_d) − log p(z_d)]    dimension-wise KL

where q(z) = (1/N) Σ_n q(z | x_n) is the average posterior over the N training images. The
loss weights the total correlation by beta (`model.tc_weight`), which pushes the code's
dimensions to be independent. q(z) and its marginals are estimated from the batch by
minibatch-weighted sampling (the paper's MWS), which is why the model needs the dataset size.
"""

import math

import torch

from ..objectives import LOG_2PI
from .base import ModelContext, Objective
from .vae import GaussianCodeModel


def log_normal_per_dim(z: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log N(z_d; mean_d, exp(log_scale_d)²) for each dimension d (not summed)."""
    return -0.5 * ((z - mean) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * LOG_2PI


def kl_decomposition(code: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                     dataset_size: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image i of a batch of M, with z_i = `code[i]` drawn from its posterior N(mean_i,
    exp(log_scale_i)²) and the prior N(0, I), the minibatch-weighted estimates

      log q(z_i)     ≈ log Σ_j q(z_i | x_j) − log(N·M)
      log q(z_i,d)   ≈ log Σ_j q(z_i,d | x_j) − log(N·M)

    and from them the three parts of the KL. They add up exactly to the one-sample KL
    log q(z_i | x_i) − log p(z_i). MWS estimates each density low, by a factor between M and
    N (it weights the image a code came from, and every other one, by 1/(N·M)), so the
    parts' levels are offset: identical posteriors, whose true mutual information and total
    correlation are 0, give log N and (D − 1)·log N. Their changes, and their gradients, are
    what the estimator is for."""
    per_dim = log_normal_per_dim(code[:, None], mean[None], log_scale[None])  # (M codes, M posteriors, D)
    log_batch_and_data = torch.log(dataset_size * len(code))
    log_q_given_x = per_dim.diagonal().sum(0)  # the diagonal moves dim 0 of (M, M) last: (D, M)
    log_q = torch.logsumexp(per_dim.sum(2), dim=1) - log_batch_and_data
    log_marginals = (torch.logsumexp(per_dim, dim=1) - log_batch_and_data).sum(1)
    log_prior = log_normal_per_dim(code, torch.zeros_like(code), torch.zeros_like(code)).sum(1)
    return {"index_code_mi": log_q_given_x - log_q, "total_correlation": log_q - log_marginals,
            "dimension_kl": log_marginals - log_prior}


class TCVAE(GaussianCodeModel):
    """The VAE's networks and prior N(0, I), trained on recon + MI + beta·TC + dimension-wise KL
    (the paper's alpha and gamma are 1). The reported KL is the closed-form one of the ELBO,
    reported with it beside the loss."""
    term_names = ("recon", "kl", "index_code_mi", "total_correlation", "dimension_kl", "neg_elbo")

    def __init__(self, options, context: ModelContext):
        super().__init__(options, context)
        self.tc_weight = options.tc_weight
        self.loss_name = f"loss (tc_weight={self.tc_weight:g})"
        # The training set's size, kept in the checkpoint so that a loaded model measures the
        # same objective as the one that trained (runs.load_model builds without the data).
        self.register_buffer("dataset_size", torch.tensor(context.dataset_size or 0))

    def objective(self, x, noise=None, labels=None) -> Objective:
        """noise ~ N(0, I) for the code, drawn here unless the caller supplies it."""
        mean, log_scale = self.encode(x)
        if noise is None:
            noise = torch.randn_like(mean)
        code = mean + torch.exp(log_scale) * noise
        recon = self.likelihood.nll(self.decode(code), x)
        kl = self.prior.kl_per_dim(mean, log_scale).sum(1)
        parts = kl_decomposition(code, mean, log_scale, self.dataset_size)
        loss = recon + parts["index_code_mi"] + self.tc_weight * parts["total_correlation"] + parts["dimension_kl"]
        return Objective(loss=loss, terms={"recon": recon, "kl": kl, **parts, "neg_elbo": recon + kl},
                         stats={"mean_log_scale": log_scale.mean(1)})
