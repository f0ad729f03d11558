import dataclasses

import pytest
import yaml

from vae_cli import config
from vae_cli.config import ConfigError

CONFIGS = sorted((config.Path(__file__).parents[1] / "configs").glob("*.yaml"))


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_every_shipped_config_loads():
    assert CONFIGS
    for path in CONFIGS:
        assert isinstance(config.load(path), config.Config)


def test_moons_config_is_the_built_in_default():
    assert config.load(CONFIGS[0].parent / "moons.yaml") == config.Config()


def test_mnist_config_matches_pytorch_examples():
    c = config.load(CONFIGS[0].parent / "mnist.yaml")
    assert (c.data.name, c.model.network, c.model.hidden, c.model.latent_dim) == ("mnist", "mlp", [400], 20)
    assert (c.model.likelihood, c.train.lr, c.train.batch_size, c.train.epochs) == ("bernoulli", 1e-3, 128, 10)


def test_overrides_apply_and_parse_yaml_values():
    c = config.load(None, ["train.epochs=3", "model.latent_dim=2", "model.hidden=[64, 32]", "train.lr=1e-4"])
    assert (c.train.epochs, c.model.latent_dim, c.model.hidden, c.train.lr) == (3, 2, [64, 32], 1e-4)


@pytest.mark.parametrize("text, message", [
    ("model:\n  latent_dim: 0\n", "model.latent_dim must be an integer from 1 to 4096, got 0"),
    ("train:\n  lr: -0.1\n", "train.lr must be a number > 0, got -0.1"),
    ("train:\n  epochs: three\n", "train.epochs must be an integer >= 1, got 'three'"),
    ("model:\n  latnt_dim: 3\n", "unknown key 'model.latnt_dim' (did you mean 'model.latent_dim'?)"),
    ("modle:\n  latent_dim: 3\n", "unknown section 'modle' (did you mean 'model'?)"),
    ("data:\n  name: cifar\n", "data.name must be one of moons, mnist, fashion-mnist, folder, got 'cifar'"),
    ("- 1\n- 2\n", "a config must be a mapping of sections"),
    ("model: 3\n", "section 'model' must be a mapping"),
    ("model: {hidden: [0]}\n", "model.hidden must be a list of positive integers"),
    ("train: {compile: 1}\n", "train.compile must be true or false, got 1"),
    ("data: {name: mnist, image_size: 32}\n", "28x28 grayscale"),
    ("model: {network: conv, hidden: [8, 8, 8]}\n", "divisible by 8"),
    ("train: {device: gpu}\n", "train.device must be auto, cpu, cuda, cuda:N or mps"),
    ("train: {lr: .nan}\n", "train.lr must be a number > 0"),
    ("model: [1\n", "not valid YAML (line 2)"),
])
def test_bad_configs_name_the_key_the_file_and_what_is_allowed(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        config.load(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize("override, message", [
    ("train.epochs", "expected KEY=VALUE"),
    ("train.epoch=3", "did you mean 'train.epochs'"),
    ("train.epochs=[", "not valid YAML"),
    ("train.epochs=-2", "train.epochs must be an integer >= 1"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        config.load(None, [override])


def test_saved_config_round_trips(tmp_path):
    original = config.load(None, ["model.kind=ae", "train.seed=7", "model.hidden=[32]"])
    config.save(original, tmp_path / "config.yaml")
    assert config.load(tmp_path / "config.yaml") == original
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved == original.to_dict()
    assert "beta" not in saved["model"] and saved["model"]["hidden"] == [32]  # only what kind ae uses
    everything = dataclasses.asdict(original)
    assert {s: {k: v for k, v in values.items() if k in saved[s]} for s, values in everything.items()} == saved


def test_every_registry_matches_the_configs_choices():
    """A new network or likelihood must be added in both places; model kinds and datasets are one place."""
    from vae_cli import models, networks, objectives, training
    from vae_cli.datasets import DATASETS
    fields = {f"{section}.{f.name}": f for section, cls in config.SECTION_CLASSES.items()
              for f in dataclasses.fields(cls)}
    registries = {"model.kind": models.KINDS, "model.network": networks.NETWORKS,
                  "model.likelihood": objectives.LIKELIHOODS, "model.activation": networks.ACTIVATIONS,
                  "train.lr_schedule": training.LR_SCHEDULES,
                  "train.precision": training.PRECISIONS}
    for key, registry in registries.items():
        assert set(fields[key].metadata["choices"]) == set(registry), key
    for name, kind in models.KINDS.items():
        assert (kind.conditional_model is not None) == ("conditional" in kind.options.__dataclass_fields__), name
        if kind.conditional_model:
            assert kind.model_class(conditional=True).conditional, name
    for f in dataclasses.fields(config.ModelConfig):
        assert set(f.metadata["used_by"] or ()) <= set(models.KINDS), f.name
    for f in dataclasses.fields(config.DataConfig):
        assert set(f.metadata["used_by"] or ()) <= set(DATASETS), f.name


def test_a_model_key_the_kind_does_not_use_is_refused_unless_left_at_its_default():
    with pytest.raises(ConfigError, match=r"model.beta does nothing for model.kind=ae.*reads model.network"):
        config.load(None, ["model.kind=ae", "model.beta=4"])
    with pytest.raises(ConfigError, match="model.hidden does nothing for model.kind=pca"):
        config.load(None, ["model.kind=pca", "model.hidden=[32]"])
    # A file written for a VAE can be tried as an autoencoder where its values are the defaults.
    assert config.load(None, ["model.kind=ae", "model.beta=1"]).model.kind == "ae"


def test_a_data_key_the_dataset_does_not_read_is_refused_unless_left_at_its_default(tmp_path):
    # A 12,000-image pilot on MNIST used to train on all 60,000 without a word.
    with pytest.raises(ConfigError, match=r"data.train_size does nothing for data.name=mnist \(only for moons\)"):
        config.load(None, ["data.name=mnist", "data.train_size=12000"])
    with pytest.raises(ConfigError, match="data.test_fraction does nothing for data.name=moons"):
        config.load(None, ["data.test_fraction=0.2"])
    with pytest.raises(ConfigError, match="data.moons does nothing for data.name=folder"):
        config.load(None, ["data.name=folder", f"data.path={tmp_path}", "data.moons=clean"])
    saved = config.load(None, ["data.name=mnist", "data.train_size=8192"]).to_dict()["data"]
    assert "train_size" not in saved and "moons" not in saved and saved["name"] == "mnist"
    assert config.load(None, ["data.train_size=100"]).to_dict()["data"]["train_size"] == 100


def test_keys_lists_what_a_kind_accepts(vae):
    keys = {row[0] for row in config.describe_keys("pca")}
    assert "model.latent_dim" in keys and "model.beta" not in keys and "model.hidden" not in keys
    assert "model.beta" in {row[0] for row in config.describe_keys("vae")}
    result = vae("keys", "--kind", "ae")
    assert result.exit_code == 0 and "model.hidden" in result.output and "model.beta" not in result.output


def test_an_override_without_a_known_section_suggests_the_section():
    with pytest.raises(ConfigError, match=r"unknown section 'trian' \(did you mean 'train'\?\)"):
        config.load(None, ["trian=3"])
    with pytest.raises(ConfigError, match=r"unknown section 'trian' \(did you mean 'train'\?\)"):
        config.load(None, ["trian.lr=3"])
