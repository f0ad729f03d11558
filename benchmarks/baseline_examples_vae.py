"""The reference to beat: the training loop of pytorch/examples' vae/main.py, rewritten here
faithfully for the benchmark (not part of the package).

What makes it the baseline: torchvision MNIST read item by item through a DataLoader with
transforms.ToTensor() (one PIL image converted per sample), an MLP 784-400-20 VAE with ReLU,
binary cross-entropy on sigmoid outputs summed over the batch plus the analytic KL, Adam lr 1e-3,
batch 128, shuffled. On an accelerator it does what main.py does with its accelerator on: one
DataLoader worker with pinned memory, each batch copied to the device. Test loss is the summed
loss over the test set divided by its size, that is the negative ELBO in nats per image, the
same unit vae-cli reports.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


class ExamplesVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        hidden = F.relu(self.fc1(x))
        return self.fc21(hidden), self.fc22(hidden)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def loaders(root, batch_size=128, accelerated=False):
    to_tensor = transforms.ToTensor()
    kwargs = {"num_workers": 1, "pin_memory": True} if accelerated else {}
    train = DataLoader(datasets.MNIST(root, train=True, download=True, transform=to_tensor),
                       batch_size=batch_size, shuffle=True, **kwargs)
    test = DataLoader(datasets.MNIST(root, train=False, transform=to_tensor),
                      batch_size=batch_size, shuffle=False, **kwargs)
    return train, test


def train_epoch(model, optimizer, train_loader, epoch=1, log_interval=10, device="cpu"):
    """As in main.py, including its running loss (one .item() per step) and its log lines."""
    model.train()
    train_loss = 0
    for batch_idx, (data, _) in enumerate(train_loader):
        data = data.to(device)
        optimizer.zero_grad()
        recon, mu, logvar = model(data)
        loss = loss_function(recon, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        if batch_idx % log_interval == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)} "
                  f"({100. * batch_idx / len(train_loader):.0f}%)]\tLoss: {loss.item() / len(data):.6f}")
    print(f"====> Epoch: {epoch} Average loss: {train_loss / len(train_loader.dataset):.4f}")


def test_loss(model, test_loader, device="cpu"):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for data, _ in test_loader:
            data = data.to(device)
            recon, mu, logvar = model(data)
            total += loss_function(recon, data, mu, logvar).item()
    return total / len(test_loader.dataset)
