import pytest

from exitgate.compiler.graph import lower
from exitgate.errors import ExitgateError
from exitgate.quant.ir import IR, Node, load_ir


def test_lower_digits_run(trained_run):
    out, _ = trained_run
    ir, weights = load_ir(out)
    g = lower(ir, weights)
    kinds = [(s.kind, s.level) for s in g.stages]
    assert kinds == [("conv", 0), ("pool", 0), ("linear", 0), ("decision", 0),
                     ("conv", 1), ("pool", 1), ("linear", 1), ("decision", 1)]
    conv0 = g.stages[0]
    assert conv0.src is None and conv0.params["relu"] and conv0.params["shift"] == ir.nodes[2].attrs["shift"]
    head = g.stage("s2")
    assert head.params["shift"] is None and head.exit == 0   # raw logits feed the decision
    assert [c.name for c in g.consumers("s1")] == ["s2", "s3"]  # the fork before exit 0's buffer
    assert sum(s.macs for s in g.stages) == sum(
        __import__("exitgate.quant.ir", fromlist=["macs_of"]).macs_of(n, ir) for n in ir.nodes)


def test_standalone_requant_is_refused(trained_run):
    out, _ = trained_run
    ir, weights = load_ir(out)
    nodes = list(ir.nodes)
    pool = next(i for i, n in enumerate(nodes) if n.op == "maxpool")
    p = nodes[pool]
    extra = Node("rq", "requant", (p.name,), p.shape, 4, False, p.exp + 4,
                 attrs={"shift": 4, "relu": False}, source="extra")
    nodes.insert(pool + 1, extra)
    nodes[pool + 2] = Node(**{**nodes[pool + 2].__dict__, "inputs": ("rq",)})
    with pytest.raises(ExitgateError, match="cannot map IR node rq .* must directly follow"):
        lower(IR(tuple(nodes), ir.exits, ir.meta), weights)
