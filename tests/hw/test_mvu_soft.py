"""Products in logic (`soft_product`, `MatrixVectorUnit(soft=True)`): every operand pair of
small widths in every signedness equals Python's product, the unit has no multiply cell and no
DSP instance even on an ECP5 platform, and synthesis maps no DSP. (The soft MVU's results under
back-pressure are in test_conv.py / test_linear.py, the ``soft`` cases.)"""

import itertools

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Fragment, Instance, Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from exitgate.hw.mvu import MatrixVectorUnit, accumulator_width, soft_product


@pytest.mark.parametrize("a_shape,b_shape", [
    (unsigned(5), signed(8)),       # the digits model's first conv: 5-bit pixels x 8-bit weights
    (signed(4), signed(3)),         # a signed narrower operand: its top bit weighs -2**(n-1)
    (signed(3), unsigned(6)),
    (unsigned(3), unsigned(4)),
    (signed(6), signed(6)),
], ids=str)
def test_soft_product_is_exact_for_every_operand_pair(a_shape, b_shape):
    a, b = Signal(a_shape), Signal(b_shape)
    y = Signal((a * b).shape())
    m = Module()
    m.d.comb += y.eq(soft_product(a, b))
    rtl = rtlil.convert(m, ports=[a, b, y])
    assert "$mul" not in rtl            # nothing a DSP mapper would take

    def values(shape):
        lo = -(1 << (shape.width - 1)) if shape.signed else 0
        return range(lo, lo + (1 << shape.width))

    sim = Simulator(m)
    bad = []

    async def check(ctx):
        for va, vb in itertools.product(values(a_shape), values(b_shape)):
            ctx.set(a, va)
            ctx.set(b, vb)
            got = ctx.get(y)
            if got != va * vb:
                bad.append((va, vb, got))

    sim.add_testbench(check)
    sim.run()
    assert not bad, bad[:5]


def _mvu(soft, pe=2, simd=4, rows=6, n=8):
    w = (np.arange(rows * n).reshape(rows, n) * 37 % 255) - 127
    b = np.arange(rows) * 101 - 300
    acc = accumulator_width(w, b, 8, False)
    return MatrixVectorUnit(w, b, in_width=8, in_signed=False, weight_bits=8, pe=pe, simd=simd,
                            acc_width=acc, shift=7, out_bits=8, relu=True, deep=True, soft=soft)


def test_soft_mvu_has_no_multiplier_even_on_ecp5():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    def instances(component, platform):
        def walk(fragment):
            for sub, name, *_ in fragment.subfragments:
                if isinstance(sub, Instance):
                    yield sub.type
                yield from walk(sub)
        return list(walk(Fragment.get(component, platform)))

    assert instances(_mvu(False), ULX3S_85F_Platform()).count("MULT18X18D") == 2 * 4
    assert "MULT18X18D" not in instances(_mvu(True), ULX3S_85F_Platform())
    # one of the two PE rows in logic: the other row's four products stay in DSPs
    assert instances(_mvu(1), ULX3S_85F_Platform()).count("MULT18X18D") == 4
    assert rtlil.convert(_mvu(False), name="top").count("cell $mul ") == 2 * 4
    assert "cell $mul " not in rtlil.convert(_mvu(True), name="top")
    assert rtlil.convert(_mvu(1), name="top").count("cell $mul ") == 4


@pytest.mark.parametrize("soft", [-1, 3, 1.5], ids=str)
def test_soft_rows_out_of_range_are_refused(soft):
    with pytest.raises(ValueError, match="soft must be"):
        _mvu(soft)
