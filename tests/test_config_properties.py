"""Whatever YAML or --set text a user writes, the loader returns a valid Config or raises the
tool's own ConfigError: never another exception."""

import dataclasses

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vae_cli import config
from vae_cli.config import ConfigError

KEYS = config.all_keys()
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["mnist", "conv", "gaussian", "dynamic", "1e-3", "cuda:0"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                      max_leaves=8)
sections = st.dictionaries(st.sampled_from([k.split(".")[1] for k in KEYS]) | st.text(max_size=8), values, max_size=5)
documents = st.dictionaries(st.sampled_from(["data", "model", "train"]) | st.text(max_size=6),
                            sections | values, max_size=4) | values


def loads_or_config_error(path, overrides=()):
    try:
        result = config.load(path, list(overrides))
    except ConfigError as error:
        assert "\n" not in str(error)
        return None
    assert isinstance(result, config.Config)
    assert config.from_dict(dataclasses.asdict(result), "round trip") == result
    return result


@settings(max_examples=300, deadline=None)
@given(document=documents)
def test_random_yaml_documents(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("c") / "c.yaml"
    path.write_text(yaml.safe_dump(document))
    loads_or_config_error(path)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_random_text_files(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("c") / "c.yaml"
    path.write_text(text)
    loads_or_config_error(path)


@settings(max_examples=300, deadline=None)
@given(overrides=st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS) | st.text(max_size=10), st.text(max_size=15)),
    st.builds(lambda k, v: f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}", st.sampled_from(KEYS), values),
), max_size=4))
def test_random_set_overrides(overrides):
    loads_or_config_error(None, overrides)
