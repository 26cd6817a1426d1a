import json

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint
from brevitas.quant import (Int8WeightPerTensorFixedPoint,
                            Int16Bias, Uint8ActPerTensorFixedPoint)
from torch import nn

from exitgate.errors import ExitgateError
from exitgate.quant import export_ir
from exitgate.quant.config import parse_config
from exitgate.quant.export import brevitas_int_logits, trace_ir
from exitgate.quant.ir import IR_VERSION, load_ir
from exitgate.quant.model import build_model
from exitgate.quant.reference import exit_logits


def _warm(model, x):
    model.train()
    with torch.no_grad():
        model(x)  # collect activation statistics so scales are not trivial
    return model.eval()


def _three_exit_model(bits=8):
    raw = {"model": {"input_bits": 5, "input_frac_bits": 4,
                     "segments": [{"channels": 4, "weight_bits": bits, "act_bits": bits},
                                  {"channels": 6, "pool": True, "weight_bits": bits},
                                  {"channels": 8, "pool": True, "weight_bits": bits}],
                     "exits": [{"after": 1, "pool": 1, "weight_bits": bits},
                               {"after": 2, "hidden": 12},
                               {"after": 3}]}}
    cfg = parse_config(raw)
    return cfg, build_model(cfg.model, (1, 8, 8))


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_three_exits_export_is_bit_exact(tmp_path, digits, bits):
    cfg, model = _three_exit_model(bits)
    x = torch.tensor(digits.x_test, dtype=torch.float32) / 16
    _warm(model, x)
    ir = export_ir(model, x[:2], tmp_path)
    ir, weights = load_ir(tmp_path)
    assert len(ir.exits) == 3
    assert [n.op for n in ir.nodes].count("linear") == 4
    ref = exit_logits(ir, weights, digits.x_test)
    brev = brevitas_int_logits(model, x, ir)
    for r, b in zip(ref, brev):
        np.testing.assert_array_equal(r, b)
    for n in ir.nodes:
        if n.op in ("conv2d", "linear") and n.source.startswith("segments"):
            assert n.attrs["weight_bits"] == bits
            assert np.abs(weights[n.attrs["weight"]]).max() <= 2 ** (bits - 1) - 1


def test_accumulator_bits_hold_the_bound(tmp_path, digits):
    cfg, model = _three_exit_model()
    _warm(model, torch.tensor(digits.x_test, dtype=torch.float32) / 16)
    ir, weights = trace_ir(model, torch.zeros(2, 1, 8, 8))
    for n in ir.nodes:
        if n.op in ("conv2d", "linear"):
            assert n.attrs["bound"] < 2 ** (n.bits - 1)
            assert n.attrs["bound"] >= 2 ** (n.bits - 2)  # and no wider than it needs


class _Seq(nn.Module):
    def __init__(self, *layers, functional_flatten=False):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.functional_flatten = functional_flatten

    def forward(self, x):
        for layer in self.layers:
            if self.functional_flatten and isinstance(layer, QuantLinear):
                x = torch.flatten(x, 1)
            x = layer(x)
        return [x]


def _inp():
    return QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)


def _conv(**kw):
    return QuantConv2d(1, 2, 3, padding=1, weight_quant=kw.get("wq", Int8WeightPerTensorFixedPoint),
                       bias_quant=Int16Bias, return_quant_tensor=True)


def test_unsupported_layer_is_named():
    m = _Seq(_inp(), _conv(), nn.BatchNorm2d(2), nn.Flatten(), QuantLinear(
        128, 10, weight_quant=Int8WeightPerTensorFixedPoint, return_quant_tensor=True))
    with pytest.raises(ExitgateError, match=r"layer 'layers.2' \(BatchNorm2d\) is not supported; "
                                            "supported layers: QuantIdentity, QuantConv2d"):
        trace_ir(m, torch.rand(2, 1, 8, 8))


def test_functional_call_is_explained():
    m = _Seq(_inp(), _conv(), QuantReLU(act_quant=Uint8ActPerTensorFixedPoint,
                                        return_quant_tensor=True),
             QuantLinear(128, 10, weight_quant=Int8WeightPerTensorFixedPoint,
                         bias_quant=Int16Bias, return_quant_tensor=True), functional_flatten=True)
    with pytest.raises(ExitgateError, match="functional call in forward"):
        trace_ir(m, torch.rand(2, 1, 8, 8))


def test_per_channel_scales_are_rejected():
    m = _Seq(_inp(), _conv(wq=Int8WeightPerChannelFixedPoint))
    with pytest.raises(ExitgateError, match="per-channel scales are not supported"):
        trace_ir(m, torch.rand(2, 1, 8, 8))


def test_missing_input_quant():
    m = _Seq(_conv())
    with pytest.raises(ExitgateError, match="must first go through a QuantIdentity"):
        trace_ir(m, torch.rand(2, 1, 8, 8))


def test_ir_file_problems(tmp_path, digits):
    cfg = parse_config({"model": {"input_bits": 5, "input_frac_bits": 4,
                                  "segments": [{"channels": 2, "pool": True}, {"channels": 2}],
                                  "exits": [{"after": 1}, {"after": 2}]}})
    model = _warm(build_model(cfg.model, (1, 8, 8)),
                  torch.tensor(digits.x_test[:64], dtype=torch.float32) / 16)
    export_ir(model, torch.zeros(1, 1, 8, 8), tmp_path)
    ir, _ = load_ir(tmp_path)
    d = json.loads((tmp_path / "ir.json").read_text())
    d["version"] = IR_VERSION + 1
    (tmp_path / "ir.json").write_text(json.dumps(d))
    with pytest.raises(ExitgateError, match=f"IR version {IR_VERSION + 1} is not supported"):
        load_ir(tmp_path)
    (tmp_path / "ir.json").write_text("{\"format\": \"exitgate-ir\", ")
    with pytest.raises(ExitgateError, match="is not valid JSON"):
        load_ir(tmp_path)
    export_ir(model, torch.zeros(1, 1, 8, 8), tmp_path)
    raw = (tmp_path / "weights.npz").read_bytes()
    (tmp_path / "weights.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ExitgateError, match="weights.npz: is corrupt or truncated"):
        load_ir(tmp_path)
    export_ir(model, torch.zeros(1, 1, 8, 8), tmp_path)
    with np.load(tmp_path / "weights.npz") as z:
        kept = {k: z[k] for k in z.files[1:]}
    np.savez(tmp_path / "weights.npz", **kept)
    with pytest.raises(ExitgateError, match="is missing"):
        load_ir(tmp_path)
    (tmp_path / "ir.json").unlink()
    with pytest.raises(ExitgateError, match="ir.json is missing: run `exitgate train"):
        load_ir(tmp_path)
