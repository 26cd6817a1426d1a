"""Board profiles are data: device totals, clocks, UART pins from amaranth-boards."""

import dataclasses

import pytest

from exitgate.boards import BoardProfile, Budget, get_board, list_boards
from exitgate.errors import ExitgateError


def test_list_and_default():
    assert list_boards() == ["ulx3s-85f", "arty-a7-35", "icebreaker"]
    assert get_board().name == "ulx3s-85f"
    board = get_board("icebreaker")
    assert get_board(board) is board


@pytest.mark.parametrize("name, family, device, clock, lut, bram, bram_bits", [
    ("icebreaker", "ice40", "iCE40UP5K", 12.0, 5280, 30, 4096),
    ("ulx3s-85f", "ecp5", "LFE5U-85F", 25.0, 83640, 208, 18432),
    ("arty-a7-35", "xc7", "xc7a35ti", 100.0, 20800, 50, 36864),
])
def test_profile_data(name, family, device, clock, lut, bram, bram_bits):
    board = get_board(name)
    assert (board.family, board.device, board.board_clock_mhz) == (family, device, clock)
    assert board.clock_mhz == board.board_clock_mhz        # no PLL
    assert (board.budget.lut, board.budget.bram, board.budget.bram_bits) == (lut, bram, bram_bits)
    platform = board.make_platform()
    assert (platform.device, platform.package) == (board.device, board.package)
    assert platform.default_clk_frequency == clock * 1e6
    usable = board.budget.usable()
    assert usable["lut"] == int(lut * board.budget.cap) and 0 < board.budget.cap <= 1
    assert usable["bram"] == int(bram * board.budget.hard_cap)


def test_usable_caps_logic_but_not_hard_blocks():
    budget = get_board("icebreaker").budget
    assert budget.caps() == {"lut": 0.85, "ff": 0.85, "dsp": 1.0, "bram": 1.0, "spram": 1.0}
    assert budget.usable() == {"lut": 4488, "ff": 4488, "dsp": 8, "bram": 30, "spram": 4}
    b = Budget(lut=1000, ff=2000, dsp=10, bram=20, bram_bits=4096, bram_primitive="X", spram=3,
               cap=0.5, hard_cap=0.9)
    assert b.usable() == {"lut": 500, "ff": 1000, "dsp": 9, "bram": 18, "spram": 2}


def test_uart_pins_come_from_the_platform():
    assert get_board("icebreaker").uart_pins() == {"rx": "6", "tx": "9"}
    assert get_board("ulx3s-85f").uart_pins() == {"rx": "M1", "tx": "L4"}
    assert get_board("arty-a7-35").uart_pins() == {"rx": "A9", "tx": "D10"}


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_board("icebreaker").clock_mhz = 48.0
    assert isinstance(get_board("icebreaker"), BoardProfile)


def test_unknown_board_lists_the_boards():
    with pytest.raises(ExitgateError,
                       match=r"unknown board 'de10': use one of ulx3s-85f, arty-a7-35, icebreaker"):
        get_board("de10")


def test_budget_cap_validated():
    with pytest.raises(ValueError, match=r"^cap must be in \(0, 1\], got 1.5"):
        Budget(lut=1, ff=1, dsp=0, bram=0, bram_bits=4096, bram_primitive="X", cap=1.5)
    with pytest.raises(ValueError, match=r"^hard_cap must be in \(0, 1\], got 0"):
        Budget(lut=1, ff=1, dsp=0, bram=0, bram_bits=4096, bram_primitive="X", hard_cap=0)


def test_deep_mvu_not_on_ice40():
    with pytest.raises(ValueError, match=r"board 'ice': deep_mvu is for ECP5 and Xilinx boards"):
        dataclasses.replace(get_board("icebreaker"), name="ice", deep_mvu=True)
    assert dataclasses.replace(get_board("ulx3s-85f"), deep_mvu=False).deep_mvu is False
