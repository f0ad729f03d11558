"""train.cuda_graph: the whole training step captured once as a CUDA graph, then replayed.

A step of the MNIST model is a few dozen small kernels, and eager PyTorch spends longer
launching them than the GPU spends running them. A CUDA graph records the launches of one step
(batch gather, noise, forward, backward, Adam, running sums) and replays them all with one
launch. What that takes, following PyTorch's CUDA graphs notes (whole-network capture):
- static inputs: the step reads its batch through one index buffer on the device, refilled
  before each replay (the dataset is already on the device);
- warm-up steps before capture on a side stream, which then also captures, so that lazy set-up
  (cuBLAS and cuDNN handles and workspaces, Adam's state) is not captured;
- an optimizer that is safe to capture: Adam with capturable=True (the trainer builds it), and
  no host synchronisation anywhere in the step;
- static outputs: the replay overwrites the loss tensor captured the first time.

The warm-up steps really train, so everything they change (weights, Adam's state, the running
sums, the CUDA generator) is put back afterwards, in place: the graph records addresses. Then
every full batch of a run is a replay whether the run started fresh or resumed mid-epoch, and
resuming stays exact. The last, smaller batch of an epoch runs eagerly.
"""

import warnings
from typing import Callable, Iterable

import torch

WARMUP_STEPS = 3  # as in PyTorch's examples; DistributedDataParallel would need 11 (it is refused)


class GraphedStep:
    """Calls like `step(rows) -> loss` and gives the same numbers, replaying a graph of it for
    every batch of the full size."""

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], batch_size: int, device: torch.device,
                 state: Callable[[], Iterable[torch.Tensor]]):
        """`step` is the eager training step; `state()` lists every tensor a step changes."""
        self.step, self.device, self.state = step, device, state
        self.rows = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.graph = self.loss = None

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if len(rows) != len(self.rows):
            return self.step(rows)  # the last batch of an epoch: another shape, run eagerly
        self.rows.copy_(rows)
        if self.graph is None:
            self.capture()
        self.graph.replay()
        return self.loss

    def capture(self) -> None:
        before = list(self.state())
        # Without no_grad a clone of a parameter is a graph node holding the parameter's
        # AccumulateGrad, made here on the default stream: alive during the capture, it would make
        # the captured backward wait on the default stream, which a capture forbids.
        with torch.no_grad():
            saved = [tensor.clone() for tensor in before]
        generator = torch.cuda.get_rng_state(self.device)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), warnings.catch_warnings():
            # Adam warns once when a capturable instance steps outside a capture: the warm-up
            # (and later each epoch's last batch) does so on purpose.
            warnings.filterwarnings("ignore", "This instance was constructed with capturable=True")
            for _ in range(WARMUP_STEPS):
                self.step(self.rows)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self._put_back(before, saved)
        torch.cuda.set_rng_state(generator, self.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=stream):
            self.loss = self.step(self.rows)

    def _put_back(self, before: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
        """Undo the warm-up in place. Tensors that the warm-up created are Adam's state of a
        fresh run, which Adam creates as zeros (its moments and step count)."""
        with torch.no_grad():
            for tensor, value in zip(before, saved):
                tensor.copy_(value)
            existed = {id(tensor) for tensor in before}
            for tensor in self.state():
                if id(tensor) not in existed:
                    tensor.zero_()
