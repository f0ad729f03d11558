"""The `vae` command. Each command is a thin function: it parses its options, calls the one
function that does the command's work (launch.train, sampling.sample, blend.interpolate,
evaluation.evaluate_run, plots.plot_run, compare.compare, ...), which tests call directly,
and prints its result.

torch and torchvision take seconds to import, so this module and config.py never import them:
each command imports the modules it needs inside its body, and the modules imported here
(sampling.py, blend.py) import torch only after their own checks. `vae --help`, `vae keys`, `vae
configs` and every usage error answer without loading torch (tests/test_cli_speed.py checks it).
"""

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from typer.core import TyperGroup

try:  # typer >= 0.22 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:
    from click.exceptions import ClickException
from rich.table import Table
from rich.text import Text

from . import __version__
from . import config as config_module
from . import blend, files, sampling
from .console import console, err_console, print_prose_table, warn
from .console import error as print_error
from .errors import Stopped, UsageError, VaeError

class OneLineUsageErrors(TyperGroup):
    """Typer's own usage errors (`--n 0`, an unknown option) in the tool's one-line style,
    instead of Typer's usage text and framed box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # plain `vae`: the help is the answer
                error.show()
            else:
                context = getattr(error, "ctx", None)
                print_error(f"{error.format_message()} (see {context.command_path if context else 'vae'} --help)")
            sys.exit(error.exit_code)
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineUsageErrors,
                  help="Train, evaluate and sample Variational Autoencoders (and the PCA and "
                       "autoencoder they grow from).", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  pretty_exceptions_enable=False)

DEBUG = {"on": bool(os.environ.get("VAE_DEBUG"))}

RunOption = Annotated[Optional[Path], typer.Option("--run", help="Run directory, or builtin:moons, the moons model that comes with vae-cli (default: the latest run).")]
DeviceOption = Annotated[str, typer.Option(help="Where the model runs: auto (cuda, then mps, then cpu), cpu, cuda, "
                                                "cuda:N or mps. A run trained on a GPU loads on any machine.")]
ThreadsOption = Annotated[str, typer.Option(help="CPU threads: auto (chosen from measured speed as it runs), or a number.")]


def _best_or_last(value: str) -> str:
    if value not in ("best", "last"):
        raise typer.BadParameter(f"{value!r}: use best or last")
    return value


CheckpointOption = Annotated[str, typer.Option(
    callback=_best_or_last, help="Which checkpoint of the run: best (lowest test loss) or last.")]


def friendly_errors(command):
    """The tool's own errors and the operating system's (read-only, full disk, permission,
    ...) become one red line and an exit code (2 usage, 1 runtime, 130 interrupted);
    `--debug` or VAE_DEBUG=1 shows the traceback as well."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Stopped as stop:
            err_console.print(str(stop), soft_wrap=True)
            raise typer.Exit(stop.exit_code) from None
        except VaeError as error:
            fail(str(error), error.exit_code)
        except OSError as error:
            fail(files.explain(error), 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)
    return wrapper


def fail(message: str, exit_code: int):
    if DEBUG["on"]:
        traceback.print_exc()
    print_error(message)
    raise typer.Exit(exit_code) from None


def show_version(value: bool) -> None:
    if value:
        console.print(f"vae-cli {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks (or set VAE_DEBUG=1).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    runs_dir: Annotated[Optional[Path], typer.Option(envvar="VAE_RUNS", show_default="runs",
                                                     help="Folder that holds the runs.")] = None,
):
    DEBUG["on"] = debug or bool(os.environ.get("VAE_DEBUG"))
    if runs_dir is not None:
        os.environ["VAE_RUNS"] = str(runs_dir)  # runs.runs_root() reads it, in this process and any it starts


@app.command()
@friendly_errors
def train(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file, or the name of a shipped one such as mnist.yaml (`vae configs` lists them; a file of that name here wins). Default: the moons config built in.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key, e.g. --set train.epochs=3 (repeatable; `vae keys` lists them).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run folder name under runs/ (default: dataset-kind-time).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run from its last.pt (only train.epochs, train.device and train.threads may be --set).")] = None,
):
    """Train a model and write checkpoints, metrics and pictures into runs/<name>/."""
    from . import launch
    launch.train(config, overrides or [], name, resume)


@app.command()
@friendly_errors
def sample(
    run: RunOption = None,
    n: Annotated[int, typer.Option("--n", min=1, max=10_000, help="Number of images.")] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, max=100.0, help="Scale of the codes (1 = the prior).")] = 1.0,
    seed: Annotated[int, typer.Option(min=0, max=config_module.SEED_MAX, help="Seed for the codes.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="PNG to write (default: in the run folder).")] = None,
    individual: Annotated[bool, typer.Option(help="Also write each image as its own PNG.")] = False,
    sampler: Annotated[str, typer.Option(help="Where codes come from: prior (the model's own: N(0, I) for a VAE, the training codes' spread for PCA and autoencoders), gmm (a 10-component Gaussian mixture fitted to the training codes, once per run, stored in the run folder), or auto: the run's stored mixture where it has one (training stores one for small training sets such as the moons), else the prior.")] = "auto",
    label: Annotated[Optional[str], typer.Option(help="Conditional runs: the class to draw, by name (7, sneaker, a folder's subfolder); default: every class in turn.")] = None,
    device: DeviceOption = "auto",
    checkpoint: CheckpointOption = "best",
):
    """Decode random codes of a trained model into a grid of new images."""
    sampling.sample(run, n, temperature, seed, out, individual, sampler, label, device, checkpoint)


@app.command()
@friendly_errors
def moon(
    phase: Annotated[float, typer.Argument(min=0.0, max=1.0, help="Lit fraction: 0 new, 0.5 half, 1 full.")],
    out: Annotated[Path, typer.Argument(help="PNG to write, e.g. full.png.")],
    size: Annotated[int, typer.Option(min=8, max=1024, help="Image size in pixels.")] = 28,
    photo: Annotated[bool, typer.Option(help="Draw a photo-like moon (texture, sky, stars, random framing) as in the default training data, instead of a clean centred disk.")] = False,
    angle: Annotated[float, typer.Option(min=-360.0, max=360.0, help="Where the sun stands, in degrees counterclockwise from the right: 0 lights the moon from the right (waxing), 90 from above, 180 from the left (waning).")] = 0.0,
    seed: Annotated[int, typer.Option(min=0, help="photo: seed for the camera's randomness.")] = 0,
):
    """Render one moon of a given phase (e.g. full.png, half.png): a clean centred disk, or
    with --photo one like the default training pictures; lit from the right unless --angle."""
    from . import moons
    console.print(f"wrote {moons.draw(phase, out, size, photo, angle, seed)}")


@app.command()
@friendly_errors
def interpolate(
    a: Annotated[str, typer.Argument(help="First image file, or a dataset image such as test:7.")],
    b: Annotated[str, typer.Argument(help="Second image file, or a dataset image such as test:3.")],
    run: RunOption = None,
    steps: Annotated[int, typer.Option(min=2, max=1000, help="Decoded images from A to B, both ends included; an odd number includes the exact midpoint.")] = 11,
    method: Annotated[str, typer.Option(help="slerp (spherical: keeps the code norm typical of the prior; blends better, see the README) or linear.")] = "slerp",
    out: Annotated[Optional[Path], typer.Option(help="PNG to write (default: a new name in the run folder).")] = None,
    gif: Annotated[bool, typer.Option(help="Also write an animated GIF going back and forth.")] = False,
    device: DeviceOption = "auto",
    individual: Annotated[bool, typer.Option(help="Also write each decoded frame as its own PNG, named by its t.")] = False,
    checkpoint: CheckpointOption = "best",
    label: Annotated[Optional[str], typer.Option(help="Conditional runs (required for them): the class both images are encoded and the path decoded with, by name (7, sneaker, a folder's subfolder).")] = None,
):
    """Blend two images through the latent space: encode both, walk between the codes, decode.

    The strip shows input A, the decoded path, then input B. Inputs are converted exactly as
    training images (see the README's "Input pictures"). A warning says when an input is far
    from what the model was trained on."""
    blend.interpolate(a, b, run, steps, method, out, gif, device, individual, checkpoint, label)


@app.command("eval")
@friendly_errors
def evaluate(
    run: RunOption = None,
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    k: Annotated[int, typer.Option("--k", min=1, max=1_000_000, help="Importance samples per image for the NLL.")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Images per batch.")] = 100,
    checkpoint: CheckpointOption = "best",
    seed: Annotated[int, typer.Option(min=0, max=config_module.SEED_MAX, help="Seed for the importance samples (the same seed and --threads N give the same numbers).")] = 0,
    device: DeviceOption = "auto",
    threads: ThreadsOption = "auto",
):
    """Measure a trained model: -ELBO, importance-weighted NLL, bits/dim, active units.

    Writes eval.json into the run folder."""
    if split not in ("train", "test"):
        raise UsageError(f"--split {split!r}: use train or test")
    threads = config_module.check_threads(threads, "vae eval")
    config_module.check_device(device, "--device")
    from . import evaluation
    report, path = evaluation.evaluate_run(run, split, k, batch_size, checkpoint, seed, device, threads)
    console.print(evaluation_table(report))
    if "note" in report:
        console.print(report["note"])
    console.print(f"wrote {path}")


def evaluation_table(report: dict) -> Table:
    table = Table(title=f"{report['run']} ({report['checkpoint']}.pt) on {report['split']}, per image")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [("squared error (sum over pixels)", "squared_error", "{:.3f}"),
            ("-ELBO (nats)", "neg_elbo", "{:.2f}"), ("  reconstruction", "recon", "{:.2f}"),
            ("  KL", "kl", "{:.2f}"), ("NLL, k={k} (nats)", "nll", "{:.2f}"),
            ("bits/dim", "bits_per_dim", "{:.4f}"), ("active units", "active_units", "{}")]
    for label, key, fmt in rows:
        if key in report:
            table.add_row(label.format(**report), fmt.format(report[key]))
    if "active_units" in report:
        table.add_row("latent dims", str(len(report["posterior_mean_variance"])))
    return table


@app.command()
@friendly_errors
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="Finished run directories on the same dataset.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("compare.png"),
    k: Annotated[int, typer.Option("--k", min=1, help="Importance samples per image for the VAEs' NLL.")] = 100,
    images: Annotated[int, typer.Option(min=2, help="Test images the numbers are measured on.")] = 1000,
    pair: Annotated[tuple[int, int], typer.Option(help="Test images to interpolate between.")] = (0, 1),
    device: DeviceOption = "auto",
    checkpoint: CheckpointOption = "best",
    seed: Annotated[int, typer.Option(min=0, max=config_module.SEED_MAX, help="Seed for the VAEs' importance samples (the same seed and --threads N give the same numbers).")] = 0,
    threads: ThreadsOption = "auto",
):
    """Put finished runs side by side on the same test images and random codes.

    Prints a table of test numbers and writes one picture with, per run, reconstructions,
    random samples from the prior and from a Gaussian mixture fitted to the training codes
    (`vae sample --sampler gmm`), and an interpolation."""
    threads = config_module.check_threads(threads, "vae compare")
    config_module.check_device(device, "--device")
    from . import compare as compare_module
    rows = compare_module.compare(run_dirs, out, k, images, pair, device, checkpoint, seed, threads)
    console.print(comparison_table(rows, images, k))
    console.print(f"wrote {out}")


def comparison_table(rows: list[dict], images: int, k: int) -> Table:
    table = Table(title=f"first {images} test images, per image; -ELBO and NLL in nats, "
                        f"undefined (-) for deterministic codes; LL: mean log-density of the test codes "
                        f"under the prior and under the GMM sampler, nats per code dimension",
                  title_justify="left")
    columns = [("run", "run", "{}"), ("kind", "kind", "{}"), ("latent", "latent_dim", "{}"),
               ("sq. error", "squared_error", "{:.2f}"), ("-ELBO", "neg_elbo", "{:.2f}"),
               (f"NLL k={k}", "nll", "{:.2f}"), ("post. scale", "mean_posterior_scale", "{:.3f}"),
               ("active", "active_units", "{}"), ("LL prior", "code_ll_prior", "{:.2f}"),
               ("LL GMM", "code_ll_gmm", "{:.2f}")]
    for title, _, _ in columns:
        table.add_column(title, justify="left" if title in ("run", "kind") else "right", no_wrap=title == "run",
                         min_width=max(len(row["run"]) for row in rows) if title == "run" else None)
    for row in rows:
        table.add_row(*(fmt.format(row[key]) if key in row else "-" for _, key, fmt in columns))
    return table


@app.command()
@friendly_errors
def plot(
    run: RunOption = None,
    image: Annotated[int, typer.Option(min=0, help="Test image whose code the traversals start from.")] = 0,
    device: DeviceOption = "auto",
    checkpoint: CheckpointOption = "best",
):
    """Draw the latent space into the run folder.

    Traversals for any code size; for 2-D codes also the decoded manifold and a scatter of
    the test set's codes coloured by label; for a conditional model one row per label, all
    decoded from the same codes."""
    config_module.check_device(device, "--device")
    from . import plots
    for path in plots.plot_run(run, image, device, checkpoint):
        console.print(f"wrote {path}")


@app.command()
@friendly_errors
def keys(
    kind: Annotated[Optional[str], typer.Option(help="Only the keys this model.kind accepts.")] = None,
    markdown: Annotated[bool, typer.Option(help="Print every key as the Markdown table of docs/configs.md.")] = False,
):
    """List every config key with its default and what it means."""
    if markdown:
        console.print(config_module.key_reference(), highlight=False, soft_wrap=True, end="")
        return
    if kind is not None and kind not in config_module.models.KINDS:
        raise UsageError(f"--kind {kind!r}: use one of {', '.join(config_module.models.KINDS)}")
    title = "config keys" + (f" of model.kind={kind}" if kind else "")
    table = Table(title=f"{title} (YAML sections data, model, train; or --set section.key=value)",
                  title_justify="left")
    for column in ("key", "default", "meaning"):
        table.add_column(column)
    for key, default, meaning in config_module.describe_keys(kind):
        table.add_row(key, "null" if default is None else str(default), meaning)
    print_prose_table(table)


@app.command("configs")
def list_configs():
    """List the configs that ship with vae-cli: `vae train --config NAME` runs one from any folder."""
    from . import catalog
    table = Table(title="shipped configs (a file of the same name in the current folder wins)",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "dataset", "model", "one epoch", "description"):
        table.add_column(column, no_wrap=column != "description")
    for entry in catalog.entries():
        table.add_row(entry.name, entry.dataset, entry.model, entry.epoch, entry.description)
    print_prose_table(table)
    console.print(f"from {catalog.folder()}", highlight=False, soft_wrap=True)


@app.command("cache")
@friendly_errors
def show_cache(
    clear: Annotated[bool, typer.Option("--clear", help="Remove every cache file (the next run decodes its folder again).")] = False,
):
    """List the decoded-image caches of image folders (data.name=folder), or clear them.

    A folder is decoded once into a file of pixels under $VAE_CACHE (default
    $XDG_CACHE_HOME/vae-cli, else ~/.cache/vae-cli) that later runs and commands map instead
    of decoding it again; a changed folder or setting is decoded again by itself."""
    from . import cache
    folder = cache.location()
    if clear:
        removed, freed = cache.clear()
        console.print(f"removed {removed} cache file(s), {freed / 1e6:,.1f} MB, from {folder}", highlight=False)
        return
    found = cache.entries()
    if not found:
        console.print(f"no decoded-image caches in {folder}", highlight=False, soft_wrap=True)
        return
    table = Table(title=f"decoded-image caches in {folder}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column in ("folder", "images", "pixels", "crop", "MB", "built", "file"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("images", "MB") else "left")
    for entry in found:
        megabytes = f"{entry['bytes'] / 1e6:,.1f}"
        if "problem" in entry:
            table.add_row(f"({entry['problem']}: rebuilt or removed when next used)", "", "", "", megabytes, "",
                          entry["path"].name)
            continue
        channels, height, width = entry["shape"]
        table.add_row(entry["folder"], f"{entry['count']:,}", f"{channels}x{height}x{width}",
                      entry["settings"]["framing"], megabytes, entry["built"] or "", entry["path"].name)
    console.print(table)
    console.print(f"{sum(e['bytes'] for e in found) / 1e6:,.1f} MB in all; `vae cache --clear` removes them",
                  highlight=False)


@app.command()
@friendly_errors
def explore(
    run: Annotated[Optional[str], typer.Option("--run", help="The run to open first, by name, or builtin:moons (default: the newest run, else builtin:moons); the page lists every run in the runs folder and the built-in models.")] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to serve on (0: any free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to serve on. The default lets only this machine in; another exposes your models to whoever reaches it.")] = "127.0.0.1",
    browser: Annotated[bool, typer.Option(help="Open the page in a web browser, where this session has one.")] = True,
):
    """Explore a trained model's latent space in a local web page: sliders over the code,
    random codes, blending two images (your own or test images), the map of a 2-D code.

    Needs the optional web server: pip install 'vae-cli[explore]'."""
    try:
        from .explore import explorer, server
    except ImportError as error:
        raise VaeError(f"vae explore needs the web server packages ({error.name} is missing): "
                       f"pip install 'vae-cli[explore]'") from None
    if run is not None:
        explorer.check_name(run)
    if host not in server.LOCAL_HOSTS:
        warn(f"--host {host}: the page has no login; anyone who can reach this address can use it")
    sock = server.listen(host, port)
    url = server.address(sock)

    def started():
        console.print(f"explore: {url}  (Ctrl-C stops it)", highlight=False)
        if browser and _has_browser():
            import webbrowser
            webbrowser.open(url)
    try:
        server.serve(sock, run, on_started=started)
    except KeyboardInterrupt:
        pass  # uvicorn has already shut down cleanly; Ctrl-C is how this command ends
    console.print("stopped")


def _has_browser() -> bool:
    """A graphical browser can open: on macOS and Windows, or where a display is set. Without
    one, Python's webbrowser would start a text browser inside this very terminal."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@app.command("runs")
@friendly_errors
def list_runs(
    name: Annotated[Optional[str], typer.Argument(help="A run to show in detail (default: list them all).")] = None,
):
    """List the runs under runs/ (newest first), or show one run: its config, last metrics and files."""
    from . import runs
    if name is None:
        found = runs.summaries()
        if not found:
            raise VaeError(f"no runs yet in {runs.runs_root().resolve()}: train one with `vae train`, "
                           f"or point `vae --runs-dir DIR` (or $VAE_RUNS) at a folder of runs")
        table = Table(title=f"runs in {runs.runs_root()}", title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False)
        for column in ("name", "dataset", "kind", "epochs", "best test loss", "state", "when"):
            table.add_column(column, no_wrap=True, justify="right" if column == "best test loss" else "left")
        for run in found:
            best = "-" if run["best_test_loss"] is None else f"{run['best_test_loss']:.2f}"
            when = run["when"].strftime("%Y-%m-%d %H:%M") if run["when"] else "-"
            table.add_row(run["name"], run["dataset"], run["kind"], run["epochs"], best, run["state"], when)
        console.print(table)
        return
    run_dir = runs.named_run(name)
    run = runs.summary(run_dir)
    config = run["config"]
    console.print(Text.assemble((str(run_dir), "bold"), f"  {run['state']}, epoch {run['epochs']}"), highlight=False)
    model = ", ".join(f"{key} {value}" for key, value in config.to_dict()["model"].items())
    console.print(f"data {config.data.name}; model {model}; train batch {config.train.batch_size}, "
                  f"lr {config.train.lr:g}, seed {config.train.seed}, device {config.train.device}", highlight=False)
    metrics = Table(title="last metrics", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key, value in run["last_metrics"].items():
        metrics.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(metrics)
    console.print(f"files ({len(run['files'])}):", highlight=False)
    for path in sorted(run["files"]):
        console.print(f"  {path.relative_to(run_dir)}  {path.stat().st_size:,} bytes", highlight=False)
