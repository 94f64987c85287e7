"""plumbing/config.py and plumbing/settings.py: reading a config safely (size, encoding, YAML
aliases), and the checks that turn bad values into one short line naming the key."""

import pytest
from conftest import CONFIG_DIR

from plumbing import config, settings
from plumbing.config import load_config
from plumbing.errors import ConfigError
from plumbing.settings import shown


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_every_shipped_config_is_well_within_the_size_limit():
    sizes = [path.stat().st_size for path in CONFIG_DIR.glob("*.yaml")]
    assert max(sizes) * 10 < config.CONFIG_LIMIT


def test_aliases_a_config_may_use_still_work(tmp_path):
    text = ("defaults: &fc {type: FC, init_wt: 0.01, epsilon: 0.1, momentum: 0.9}\n"
            "network:\n  - {<<: *fc, name: fc1, num_channels: 20}\n  - {<<: *fc, name: output, num_channels: 10}\n")
    loaded = load_config(write(tmp_path, text))
    assert loaded["network"][1] == {"type": "FC", "init_wt": 0.01, "epsilon": 0.1, "momentum": 0.9,
                                    "name": "output", "num_channels": 10}


def test_an_alias_that_holds_itself_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="refers to a value that holds it"):
        load_config(write(tmp_path, "network: &a [*a]\n"))


def test_aliases_standing_for_too_much_text_are_refused_before_anything_is_built(tmp_path, monkeypatch):
    levels = ["&a0 [" + ", ".join(["xxxxxxxx"] * 10) + "]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 5)]  # 10**5 strings of 8
    monkeypatch.setattr(config.yaml.SafeLoader, "construct_document",
                        lambda self, node: pytest.fail("built before the check"))
    with pytest.raises(ConfigError, match="line 1.*once its aliases are written out"):
        load_config(write(tmp_path, "batch_size: [" + ", ".join(levels) + "]\n"))


def test_yaml_nested_too_deeply_is_one_error(tmp_path):
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(write(tmp_path, "network: " + "[" * 20000 + "]" * 20000 + "\n"))


def test_a_byte_order_mark_is_fine_and_latin_1_is_named(tmp_path):
    assert load_config(write(tmp_path, b"\xef\xbb\xbfmax_epochs: 3\n"))["max_epochs"] == 3
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 at line 1\)"):
        load_config(write(tmp_path, b"name: caf\xe9\n"))


def test_an_unhashable_key_is_not_called_a_python_object(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "? [a, b]\n: 1\n"))
    assert "not valid YAML at line 1" in str(info.value) and "Python object" not in str(info.value)


def test_shown_shortens_long_values_only():
    assert shown("epsilion") == "'epsilion'"
    long = shown(list(range(10000)))
    assert len(long) == settings.SHOWN_LIMIT and long.startswith("[0, 1, 2") and long.endswith(" ...")


@pytest.mark.parametrize("seed", [-1, 2 ** 63, 1.5, True, "3"])
def test_check_seed_refuses_what_the_generators_or_the_last_state_cannot_keep(seed):
    with pytest.raises(ConfigError, match="--seed"):
        settings.check_seed(seed)


def test_layer_names_come_from_a_safe_set():
    for good in ("conv1", "fc-2", "out.put", "A_b"):
        assert config.LAYER_NAME.fullmatch(good)
    for bad in ("", "a/b", "a\0b", "x" * 65, "naïve", "a b"):
        assert not config.LAYER_NAME.fullmatch(bad)


@pytest.mark.parametrize("text,key,lines", [
    ("max_epochs: 3\nbatch_size: 10\nmax_epochs: 5\n", "max_epochs", (1, 3)),
    ("network:\n  - name: a\n    type: FC\n    num_channels: 10\n    num_channels: 12\n", "num_channels", (4, 5)),
    ("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n  d: 3\n", "d", (4, 5)),
])
def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path, text, key, lines):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert f"key '{key}' is given twice, at lines {lines[0]} and {lines[1]}" in str(info.value)


def test_a_merge_key_is_not_a_key_given_twice(tmp_path):
    config = load_config(write(tmp_path, "a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\nd2:\n  <<: *x\n"))
    assert config["c"] == {"b": 1, "d": 2} and config["d2"] == {"b": 1}


def test_a_key_the_loader_reserves_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="key '_path' is the kit's own"):
        load_config(write(tmp_path, "_path: elsewhere.yaml\nmax_epochs: 3\n"))
