"""curves.png and the latent scatter (charts.py): curves drawn from metrics.jsonl with one panel per loss term, redrawn as a run goes on,
and never at a cost above a tenth of the training time but after the last epoch."""

import time

from PIL import Image

from conftest import TINY_MOONS
from vae_cli import charts, runs

TINY = [a for o in TINY_MOONS for a in ("--set", o)]


def test_the_terms_are_whatever_the_records_hold_loss_first():
    records = [{"epoch": 1, "train_recon": 3.0, "train_loss": 4.0, "train_kl": 1.0, "test_loss": 4.5,
                "test_mean_log_scale": -0.2, "best": True, "seconds": 1.0, "images_per_s": 10.0}]
    assert charts.term_names(records) == ["loss", "recon", "kl", "mean_log_scale"]


def test_a_run_draws_a_panel_per_term_and_redraws_when_resumed(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", "c").exit_code == 0
    path = runs_dir / "c" / "curves.png"
    first = path.read_bytes()
    panels = len(charts.term_names(runs.read_metrics(runs_dir / "c")))
    assert panels >= 3  # loss, recon, kl (and the code's mean log-scale)
    with Image.open(path) as picture:
        assert picture.size == (400 * panels, 340)  # 4 x 3.4 inches a panel at 100 dpi
    assert vae("train", "--resume", runs_dir / "c", "--set", "train.epochs=2").exit_code == 0
    assert path.read_bytes() != first


def test_drawing_is_skipped_while_it_would_cost_over_a_tenth_of_the_time(monkeypatch, tmp_path):
    drawn = []

    def slow_draw(metrics, path, title=""):
        time.sleep(0.05)
        drawn.append(len(metrics))
    monkeypatch.setattr(charts, "draw_curves", slow_draw)
    picture = charts.CurvesPicture(tmp_path / "curves.png")
    picture.after_epoch(lambda: [{}], last=False)
    picture.after_epoch(lambda: [{}, {}], last=False)  # at once: 0 s since, 0.05 s to draw
    assert drawn == [1]
    picture.after_epoch(lambda: [{}, {}, {}], last=True)
    assert drawn == [1, 3]


def test_the_scatter_colours_each_class_on_its_side(tmp_path):
    """Two classes far apart: each one's colour (matplotlib's C0, C1) is on the picture, the
    first class's points left and low, the second's right and high."""
    import torch
    from torchvision.transforms.functional import pil_to_tensor
    points = torch.tensor([[-2.0, -2.0]] * 50 + [[2.0, 2.0]] * 50) + 0.05 * torch.randn(100, 2)
    path = charts.draw_scatter(points, [0] * 50 + [1] * 50, ["zero", "one"], tmp_path / "s.png")
    with Image.open(path) as picture:
        width, height = picture.size
        pixels = pil_to_tensor(picture.convert("RGB")).permute(1, 2, 0).int()  # (rows, columns, RGB)
    plot = pixels[:, :int(0.72 * width)]  # the legend, right of the axes, has both colours too
    centres = []
    for colour in ((31, 119, 180), (255, 127, 14)):
        ys, xs = torch.nonzero((plot - torch.tensor(colour)).abs().sum(-1) < 30, as_tuple=True)
        assert len(xs) > 50, colour
        centres.append((xs.float().mean(), ys.float().mean()))
    (x0, y0), (x1, y1) = centres
    assert x0 < x1 and y0 > y1  # image rows grow downwards


def test_drawing_leaves_the_callers_matplotlib_backend(tmp_path):
    """A notebook that imports vae_cli and draws a run's curves keeps its own backend."""
    import matplotlib
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        path = charts.draw_curves([{"epoch": 1, "train_loss": 3.0, "test_loss": 4.0}], tmp_path / "c.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    with Image.open(path) as picture:
        assert (picture.format, picture.size) == ("PNG", (400, 340))


def test_a_run_stopped_early_draws_the_epochs_it_skipped(vae, runs_dir, monkeypatch):
    """Epoch 2's drawing is skipped as too costly, then the run is stopped after it (as by
    Ctrl-C): curves.png still shows both epochs."""
    from vae_cli import training
    drawn, draw = [], charts.draw_curves
    monkeypatch.setattr(charts, "draw_curves", lambda metrics, *rest: (drawn.append(len(metrics)), draw(metrics, *rest)))
    monkeypatch.setattr(charts, "DRAWING_SHARE", 1e-12)  # only the first and last epochs would be drawn
    monkeypatch.setattr(training.Trainer, "stop_requested", lambda self, stop: self.epoch == 2 and self.step == 0)
    result = vae("train", *TINY, "--set", "train.epochs=3", "--name", "stopped")
    assert result.exit_code == 130 and "after epoch 2" in result.output, result.output
    assert drawn == [1, 2]
    assert (runs_dir / "stopped" / "curves.png").is_file()
