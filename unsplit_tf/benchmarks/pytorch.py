"""The authors' attack loops in their own framework, PyTorch eager, for speed comparison only.

Optional: needs `pip install torch` (not a dependency of unsplit-tf). Written
from the algorithm as docs/ALGORITHMS.md states it: per step one forward and
backward pass and one Adam(amsgrad) step; for labels, per example ten backward
passes through the clone's last layer (one per candidate label) and one clone step.
"""

from __future__ import annotations

import importlib.util
import os
import time


def available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _mnist_client_depth2():
    import torch

    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2))


def inversion_speed(batch: int, rounds: int, input_iters: int = 100, model_iters: int = 100) -> float:
    """Image-steps per second of the alternating optimisation, first round excluded."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    client, clone = _mnist_client_depth2(), _mnist_client_depth2()
    with torch.no_grad():
        target = client(torch.rand(batch, 1, 28, 28))
    x_hat = torch.full((batch, 1, 28, 28), 0.5, requires_grad=True)
    input_optimizer = torch.optim.Adam([x_hat], lr=1e-3, amsgrad=True)
    model_optimizer = torch.optim.Adam(clone.parameters(), lr=1e-3, amsgrad=True)
    mse = torch.nn.MSELoss()

    def total_variation(x):
        down = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).mean()
        right = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).mean()
        return down + right

    stamps = []
    for _ in range(rounds + 1):
        for _ in range(input_iters):
            input_optimizer.zero_grad()
            loss = mse(clone(x_hat), target) + 0.1 * total_variation(x_hat) + (x_hat**2).mean()
            loss.backward()
            input_optimizer.step()
        for _ in range(model_iters):
            model_optimizer.zero_grad()
            mse(clone(x_hat), target).backward()
            model_optimizer.step()
        stamps.append(time.perf_counter())
    return batch * (input_iters + model_iters) * rounds / (stamps[-1] - stamps[0])


def label_inference_speed(examples: int = 300, features: int = 84, classes: int = 10) -> float:
    """Examples per second of the one-example-at-a-time weight-gradient matching loop."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    client, clone = torch.nn.Linear(features, classes), torch.nn.Linear(features, classes)
    optimizer = torch.optim.Adam(clone.parameters(), lr=1e-3, amsgrad=True)
    cross_entropy = torch.nn.CrossEntropyLoss()
    inputs = torch.relu(torch.randn(examples, 1, features))
    labels = torch.randint(0, classes, (examples, 1))
    observed = [torch.autograd.grad(cross_entropy(client(a), y), client.weight)[0] for a, y in zip(inputs, labels)]
    candidates = [torch.tensor([c]) for c in range(classes)]
    start = time.perf_counter()
    for a, target in zip(inputs, observed):
        logits = clone(a)
        errors = [
            float(((torch.autograd.grad(cross_entropy(logits, c), clone.weight, retain_graph=True)[0] - target) ** 2).mean())
            for c in candidates
        ]
        guess = candidates[errors.index(min(errors))]
        optimizer.zero_grad()
        cross_entropy(clone(a), guess).backward()
        optimizer.step()
    return examples / (time.perf_counter() - start)
