"""Where the codes that `vae sample` decodes come from (their names: sampling.SAMPLERS).

  prior  the model's own sampling prior: N(0, I) for a VAE, the training codes' spread for
         PCA and autoencoders
  gmm    a Gaussian mixture fitted by EM to the posterior means of the training set (as
         pythae's GMM sampler): it follows the clusters the codes really form, so even a plain
         autoencoder, whose codes fill no simple Gaussian, becomes a generator
  auto   (`vae sample`'s default) the mixture where the run has one stored for the checkpoint,
         else the prior. Training stores one for small training sets (the moons): a VAE's
         codes do not fill N(0, I) evenly, and prior samples from its holes decode to blobs

The mixture has full covariance matrices: an autoencoder's codes are correlated and their
clusters are tilted against the axes, which a diagonal mixture could only follow with many more
components; with codes of tens of dimensions a d x d Cholesky factor per component costs nothing
next to encoding the training set. It is fitted once per run and checkpoint, seeded with the
run's seed, and stored as plain tensors in the run folder (sampler_gmm_best.pt), so the same
run samples the same mixture on every machine.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from . import data as data_module
from . import files, runs
from .console import console, warn

GMM_COMPONENTS = 10
EM_MAX_ITERATIONS = 200
EM_TOLERANCE = 1e-4        # stop when the mean log-likelihood per code rises by less (nats)
COVARIANCE_FLOOR = 1e-6    # added to every variance, times the codes' mean variance: no singular component
MAX_FIT_CODES = 60_000    # a seeded subset of larger training sets: EM's time grows with the codes
AUTO_FIT_IMAGES = 10_000  # training fits the mixture itself for training sets up to this size
GMM_FORMAT = "vae-cli/gmm/1"


@dataclass
class GaussianMixture:
    """weights (K,), means (K, d) and covariances (K, d, d), in float64."""
    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor

    def component_log_probs(self, codes: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(code; mean_k, cov_k) for every code and component: (N, K)."""
        codes = codes.double()
        tril = torch.linalg.cholesky(self.covariances)                      # (K, d, d)
        whitening = torch.linalg.inv(tril)                                  # L⁻¹: (x − m)ᵀ C⁻¹ (x − m) = |L⁻¹(x − m)|²
        # All components in one (N, d) @ (d, K·d) product: L⁻¹x − L⁻¹m, never a (K, N, d) copy of the codes.
        k, dims = self.means.shape
        whitened = codes @ whitening.transpose(1, 2).permute(1, 0, 2).reshape(dims, k * dims)
        whitened = whitened.view(len(codes), k, dims) - (whitening @ self.means.unsqueeze(2)).squeeze(2)
        squared = whitened.square().sum(2).T                                  # (K, N)
        half_log_det = tril.diagonal(dim1=1, dim2=2).log().sum(1)            # (K,)
        log_normal = -0.5 * squared - half_log_det.unsqueeze(1) - 0.5 * dims * math.log(2 * math.pi)
        return (self.weights.log().unsqueeze(1) + log_normal).T

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """The mixture's log-density at each code: (N,)."""
        return torch.logsumexp(self.component_log_probs(codes), dim=1)

    def sample_codes(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """n codes: a component drawn by weight, then its Gaussian with the noise scaled by
        `temperature` (1 = the fitted mixture), as float32."""
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        tril = torch.linalg.cholesky(self.covariances)[components]
        codes = self.means[components] + temperature * (tril @ noise.unsqueeze(2)).squeeze(2)
        return codes.float()

    def state(self) -> dict:
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}


def _kmeans_plus_plus(codes: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k starting means spread over the codes: each next one drawn with probability proportional
    to its squared distance from the nearest mean so far (Arthur & Vassilvitskii 2007)."""
    means = [codes[torch.randint(len(codes), (1,), generator=generator)][0]]
    distance = ((codes - means[0]) ** 2).sum(1)
    for _ in range(1, k):
        # Fewer distinct codes than k (a tiny training set): every code left sits on a mean
        # already, and any of them will do.
        weights = distance if distance.sum() > 0 else torch.ones_like(distance)
        chosen = torch.multinomial(weights / weights.sum(), 1, generator=generator)[0]
        means.append(codes[chosen])
        distance = torch.minimum(distance, ((codes - codes[chosen]) ** 2).sum(1))
    return torch.stack(means)


def _maximise(codes: torch.Tensor, responsibilities: torch.Tensor, floor: float) -> GaussianMixture:
    """The M-step: the weighted share, mean and covariance of the codes per component."""
    counts = responsibilities.sum(0) + 1e-12                                  # (K,)
    means = responsibilities.T @ codes / counts.unsqueeze(1)                  # (K, d)
    # One (d, N) @ (N, d) product per component, not a (K, N, d) tensor of centred codes.
    second_moments = torch.stack([(codes * r.unsqueeze(1)).T @ codes for r in responsibilities.T])
    covariances = second_moments / counts.view(-1, 1, 1) - means.unsqueeze(2) * means.unsqueeze(1)
    covariances += floor * torch.eye(codes.shape[1], dtype=codes.dtype)
    return GaussianMixture(counts / counts.sum(), means, covariances)


def fit_gmm(codes: torch.Tensor, components: int = GMM_COMPONENTS, seed: int = 0,
            max_iterations: int = EM_MAX_ITERATIONS, tolerance: float = EM_TOLERANCE
            ) -> tuple[GaussianMixture, list[float]]:
    """A Gaussian mixture fitted to `codes` (N, d) by expectation-maximisation, started from
    k-means++ means drawn with `seed`; and the mean log-likelihood per code after each M-step
    (it never decreases: each EM step raises it or leaves it)."""
    codes = codes.double()
    components = min(components, len(codes))
    floor = COVARIANCE_FLOOR * float(codes.var(0).mean()) if len(codes) > 1 else COVARIANCE_FLOOR
    generator = torch.Generator().manual_seed(seed)
    nearest = torch.cdist(codes, _kmeans_plus_plus(codes, components, generator)).argmin(1)
    mixture = _maximise(codes, torch.nn.functional.one_hot(nearest, components).double(), floor)
    history = []
    for _ in range(max_iterations):
        log_probs = mixture.component_log_probs(codes)
        log_likelihood = torch.logsumexp(log_probs, dim=1, keepdim=True)
        history.append(float(log_likelihood.mean()))
        if len(history) > 1 and history[-1] - history[-2] < tolerance:
            break
        mixture = _maximise(codes, (log_probs - log_likelihood).exp(), floor)
    return mixture, history


@torch.inference_mode()
def training_codes(model, data, batch_size: int = 1000) -> torch.Tensor:
    """The posterior means (the codes) of the whole training split, each image encoded with its
    label (which only a conditional model reads: its codes hold the style, whatever the class)."""
    labels = data.train_labels
    return torch.cat([model.encode(batch, labels[start:start + batch_size])[0]
                      for start, batch in zip(range(0, len(labels), batch_size), data.train_batches(batch_size))]).cpu()


def _fitted_to(checkpoint: dict, which: str) -> dict:
    return {"checkpoint": which, "epoch": checkpoint["epoch"], "step": checkpoint["step"]}


def stored_gmm(run_dir: Path | None, which: str, checkpoint: dict) -> GaussianMixture | None:
    """The mixture fitted to this very checkpoint (`checkpoint`, the loaded {which}.pt): the one
    a built-in model's weights file carries, else the run's sampler_gmm_{which}.pt; or None."""
    stored = checkpoint.get("sampler_gmm")
    if stored is None:
        path = None if run_dir is None else run_dir / f"sampler_gmm_{which}.pt"
        if path is None or not path.is_file():
            return None
        stored = runs.load_checkpoint(path)
        if stored.get("fitted_to") != _fitted_to(checkpoint, which):
            return None
    if stored.get("sampler") != GMM_FORMAT:
        return None
    return GaussianMixture(stored["weights"], stored["means"], stored["covariances"])


def gmm_for_run(run_dir: Path | None, run_config, model, which: str, checkpoint: dict, device="cpu",
                data=None) -> GaussianMixture:
    """The mixture for `checkpoint` (the loaded {which}.pt, whose weights `model` holds): the one
    it carries or the run's stored one (`stored_gmm`), else fitted to the training codes (of
    `data`, or of the run's data loaded now) and stored in the run folder."""
    stored = stored_gmm(run_dir, which, checkpoint)
    if stored is not None:
        return stored
    codes = training_codes(model, data if data is not None else data_module.load(run_config.data, device))
    seed = run_config.train.seed
    if len(codes) > MAX_FIT_CODES:
        codes = codes[torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))[:MAX_FIT_CODES]]
    mixture, history = fit_gmm(codes, seed=seed)
    console.print(f"fitted a {len(mixture.weights)}-component Gaussian mixture to {len(codes):,} training codes "
                  f"in {len(history)} EM steps (log-likelihood {history[-1]:.2f} nats per code)")
    payload = {"sampler": GMM_FORMAT, **mixture.state(), "seed": seed, "fitted_to": _fitted_to(checkpoint, which),
               "codes": len(codes), "log_likelihood_history": history}
    try:
        runs.save_checkpoint(payload, run_dir / f"sampler_gmm_{which}.pt")
    except (OSError, files.FileFault) as error:
        warn(f"the mixture is used but not stored ({error}): it is fitted again next time")
    return mixture


def fit_after_training(run_dir: Path, run_config, data, device) -> None:
    """The mixture of the finished run's best checkpoint, stored in the run folder for `vae
    sample`'s default sampler (auto), where that is quick: EM on the moons' 8,192 codes takes a
    second, on MNIST's 60,000 a minute or more, which those runs spend only when asked
    (`vae sample --sampler gmm`)."""
    if len(data.train_labels) > AUTO_FIT_IMAGES:
        return
    _, model, checkpoint = runs.load_model(run_dir, "best", device)
    gmm_for_run(run_dir, run_config, model, "best", checkpoint, device, data)
