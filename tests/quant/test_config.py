import pytest

from exitgate.errors import ExitgateError
from exitgate.quant.config import (default_config_path, dump_config, load_config,
                                   parse_config)


def _raw(**over):
    raw = {"model": {"segments": [{"channels": 4, "pool": True}, {"channels": 8}],
                     "exits": [{"after": 1}, {"after": 2}]}}
    for k, v in over.items():
        raw["model"][k] = v
    return raw


def test_builtin_configs_load():
    d = load_config()
    assert len(d.model.exits) == 2 and d.dataset == "digits"
    le = load_config(default_config_path("lenet28"))
    assert le.model.input_bits == 8 and len(le.model.segments) == 3


def test_dump_roundtrip():
    cfg = load_config()
    import tomllib
    assert parse_config(tomllib.loads(dump_config(cfg))) == cfg


def test_three_exits_parse():
    raw = _raw(segments=[{"channels": 4}, {"channels": 4}, {"channels": 4}],
               exits=[{"after": 1}, {"after": 2}, {"after": 3}])
    assert len(parse_config(raw).model.exits) == 3


@pytest.mark.parametrize("raw, message", [
    ({"model": {"segments": [{"channels": 4}], "exits": [{"after": 1}, {"after": 1}]},
      "bogus": {}}, "unknown key 'bogus'; allowed keys: data, model, train, calibration"),
    (_raw(segments=[{"channels": 4, "weight_bits": 1}, {"channels": 8}]),
     r"model.segments\[0\].weight_bits: 1 is out of range; allowed: 2..8"),
    (_raw(segments=[{"channels": 4, "act_bits": 9}, {"channels": 8}]),
     r"model.segments\[0\].act_bits: 9 is out of range; allowed: 2..8"),
    (_raw(exits=[{"after": 3}, {"after": 2}]),
     r"model.exits\[0\].after: there is no segment 3; allowed: 1..2"),
    (_raw(exits=[{"after": 2}]), "needs 2 or more exits, got 1"),
    (_raw(exits=[{"after": 1}, {"after": 1, "hidden": 4}]), "strictly increasing"),
    (_raw(exits=[{"after": 1}, {"after": 1}, {"after": 2, "colour": 1}]),
     r"model.exits\[2\]: unknown key 'colour'"),
    (_raw(segments=[{"channels": "4"}, {"channels": 8}]),
     r"model.segments\[0\].channels: expected int, got '4'"),
    ({**_raw(), "train": {"mode": "fast"}}, "'fast' is not a mode; allowed: e2e, ic-only"),
    ({**_raw(), "train": {"exit_weights": [1.0]}}, "need 2 non-negative numbers"),
    ({**_raw(), "calibration": {"thresholds": [0.5, 1.5]}}, r"thresholds must be in \(0, 1\]"),
])
def test_bad_configs_name_the_problem(raw, message):
    with pytest.raises(ExitgateError, match=message):
        parse_config(raw)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ExitgateError, match="does not exist; built-in configs"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ExitgateError, match="not valid TOML"):
        load_config(bad)
