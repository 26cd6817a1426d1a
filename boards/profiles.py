"""Board profiles: what the compiler may spend on a board and how to build for it, as data.

A `BoardProfile` names the FPGA (family, device, package), the amaranth-boards platform class that
owns its pins, the clock, and a resource `Budget` (the device totals and utilisation caps). Pins
are never named here: the UART comes from the platform's ``"uart"`` resource (`uart_pins` reads it
back, for reports and tests).

Clocks: no PLL is instantiated, so the design clock is the board clock on every board
(``clock_mhz == board_clock_mhz``).

Device totals (`Budget`) come from the vendors' data sheets:

- iCE40UP5K: Lattice "iCE40 UltraPlus Family Data Sheet" (FPGA-DS-02008), Table 1.1:
  5280 LUT4 (one FF each), 8 DSP (SB_MAC16), 30 EBR (SB_RAM40_4K, 4 kbit = 120 kbit),
  4 SPRAM (SB_SPRAM256KA, 256 kbit each).
- LFE5U-85F: Lattice "ECP5 and ECP5-5G Family Data Sheet" (FPGA-DS-02012), Table 1.1:
  84K LUT4 (83,640; one FF each), 156 18x18 multipliers (MULT18X18D), 208 sysMEM blocks
  (DP16KD, 18 kbit = 3744 kbit).
- xc7a35t: Xilinx "7 Series FPGAs Data Sheet: Overview" (DS180), Table 3: 20,800 LUT6
  (5,200 slices x 4), 41,600 FF, 90 DSP48E1, 50 RAMB36E1 (36 kbit = 1800 kbit).

The nextpnr utilisation reports of `exitgate.boards.build` list the same totals for the two
Lattice devices.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth_boards.arty_a7 import ArtyA7_35Platform
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ..errors import ExitgateError

__all__ = ["Budget", "BoardProfile", "BOARDS", "DEFAULT_BOARD", "get_board", "list_boards"]


@dataclass(frozen=True)
class Budget:
    """Device totals and the fraction of each a design may use (`caps`).

    ``lut`` counts the family's LUT (LUT4 on iCE40/ECP5, LUT6 on xc7); ``bram`` counts the family's
    block-RAM primitive (``bram_primitive``, ``bram_bits`` bits each); ``spram`` counts iCE40
    single-port RAMs (0 elsewhere).

    Two caps, because the resources fill up differently. ``cap`` (LUT and FF, default 0.85) keeps
    headroom in the fabric: placement needs free logic cells to spread into, and routing
    congestion, and with it the clock, degrades as a device fills. ``hard_cap`` (DSP, block RAM,
    SPRAM, default 1.0) can allow every hard block: each is a fixed site with its own dedicated
    routing, and the logic around it is already counted in LUT and FF.

    On the ECP5-85F a digits baseline that used all 156 MULT18X18D never finished routing
    (router1 circled at 33 overused wires for 45 minutes, seed 2 likewise, router2 diverged
    after 70 minutes); 8 of those DSPs bought no throughput (the folding search had taken a step
    that relieved one stage while the next one set the pace). The search now gives such
    products back (`exitgate.compiler.dse`, trim), and that design is 148 DSPs, routed in 8
    minutes at 114.8 MHz. A 0.99 hard cap was tried first and left the MNIST baseline at 140
    DSPs and 25 % slower; the all-156 MNIST baseline routed in 806 s (README, Current figures).
    A design that does need every DSP and does not route stops at `exitgate build`'s time limit
    with an error that says what to do."""
    lut: int
    ff: int
    dsp: int
    bram: int
    bram_bits: int
    bram_primitive: str
    spram: int = 0
    cap: float = 0.85
    hard_cap: float = 1.0

    def __post_init__(self):
        for name in ("cap", "hard_cap"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")

    def caps(self) -> dict[str, float]:
        """The cap of each resource: ``cap`` for LUT and FF, ``hard_cap`` for the hard blocks."""
        return {"lut": self.cap, "ff": self.cap, "dsp": self.hard_cap, "bram": self.hard_cap,
                "spram": self.hard_cap}

    def usable(self) -> dict[str, int]:
        """What a design may use: each total times its cap (`caps`), rounded down."""
        return {key: int(getattr(self, key) * c) for key, c in self.caps().items()}


@dataclass(frozen=True)
class BoardProfile:
    """One board: its FPGA, platform class, clocks (MHz) and budget.

    ``open_flow`` says whether `exitgate.boards.build` can produce a bitstream with the open
    toolchain (``bitstream`` is its file suffix); boards without one get sources only."""
    name: str
    family: str            # "ice40" | "ecp5" | "xc7"
    device: str
    package: str
    platform: type
    board_clock_mhz: float
    clock_mhz: float
    budget: Budget
    open_flow: bool
    bitstream: str | None  # ".bin" | ".bit" | None
    #: the MVUs' deep pipeline (`exitgate.compiler.graph.HwGraph.deep`): for FPGAs with
    #: flip-flops to spare whose DSPs sit far from the block RAM and logic they talk to (ECP5:
    #: the weight ROM -> MULT18X18D route set the clock); not on the iCE40UP5K, where every
    #: flip-flop counts
    deep_mvu: bool = False

    def __post_init__(self):
        if self.deep_mvu and self.family == "ice40":
            raise ValueError(f"board {self.name!r}: deep_mvu is for ECP5 and Xilinx boards; on "
                             f"iCE40 the MVU's deep pipeline is neither fitted by the resource "
                             f"model nor worth its flip-flops (leave deep_mvu=False)")

    def make_platform(self):
        """A fresh platform instance (amaranth platforms can build only once)."""
        return self.platform()

    def uart_pins(self) -> dict[str, str]:
        """The FPGA pins of the platform's ``uart`` 0 resource: {"rx": pin, "tx": pin}."""
        resource = self.make_platform().lookup("uart", 0)
        pins = {}
        for sub in resource.ios:
            if sub.name in ("rx", "tx"):
                (pin,) = sub.ios[0].names
                pins[sub.name] = pin
        return pins


def _mhz(platform: type) -> float:
    return platform().default_clk_frequency / 1e6


BOARDS: dict[str, BoardProfile] = {p.name: p for p in (
    BoardProfile(
        name="icebreaker", family="ice40", device="iCE40UP5K", package="SG48",
        platform=ICEBreakerPlatform, board_clock_mhz=_mhz(ICEBreakerPlatform),
        clock_mhz=_mhz(ICEBreakerPlatform),
        budget=Budget(lut=5280, ff=5280, dsp=8, bram=30, bram_bits=4096,
                      bram_primitive="SB_RAM40_4K", spram=4),
        open_flow=True, bitstream=".bin"),
    BoardProfile(
        name="ulx3s-85f", family="ecp5", device="LFE5U-85F", package="BG381",
        platform=ULX3S_85F_Platform, board_clock_mhz=_mhz(ULX3S_85F_Platform),
        clock_mhz=_mhz(ULX3S_85F_Platform),
        budget=Budget(lut=83640, ff=83640, dsp=156, bram=208, bram_bits=18432,
                      bram_primitive="DP16KD"),
        open_flow=True, bitstream=".bit", deep_mvu=True),
    BoardProfile(
        name="arty-a7-35", family="xc7", device="xc7a35ti", package="csg324",
        platform=ArtyA7_35Platform, board_clock_mhz=_mhz(ArtyA7_35Platform),
        clock_mhz=_mhz(ArtyA7_35Platform),
        budget=Budget(lut=20800, ff=41600, dsp=90, bram=50, bram_bits=36864,
                      bram_primitive="RAMB36E1"),
        open_flow=False, bitstream=None, deep_mvu=True),
)}

#: The default board. Not the iCEBreaker: the default digits model needs about 6100 iCE40 logic
#: cells at its smallest folding (LUT + unpaired FF; 7398 placed by nextpnr for the folding the
#: DSE picks), more than an iCE40UP5K's 5280, so a default flow on it could not finish. The
#: iCEBreaker stays a supported target for models that fit it.
DEFAULT_BOARD = "ulx3s-85f"


def list_boards() -> list[str]:
    """Names of the known boards, default first."""
    return [DEFAULT_BOARD] + sorted(name for name in BOARDS if name != DEFAULT_BOARD)


def get_board(name: str | BoardProfile = DEFAULT_BOARD) -> BoardProfile:
    """The profile called ``name`` (a profile is returned as is); ExitgateError if unknown."""
    if isinstance(name, BoardProfile):
        return name
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ExitgateError(f"unknown board {name!r}: use one of "
                            f"{', '.join(list_boards())}") from None
