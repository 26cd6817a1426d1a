"""exitgate.boards: board profiles (budgets, clocks, amaranth-boards platforms), the UART and the
UART harness around an accelerator, and open-toolchain builds.

    from exitgate.boards import get_board, UartHarness
    from exitgate.boards.build import build     # (not re-exported: it would hide the module)
"""

from .harness import (Error, Result, UartHarness, decode_frames, encode_image, encode_mode,
                      encode_threshold)
from .profiles import BOARDS, DEFAULT_BOARD, BoardProfile, Budget, get_board, list_boards
from .uart import UartRx, UartTx, decode_8n1, encode_8n1, uart_divisor

__all__ = ["BOARDS", "DEFAULT_BOARD", "BoardProfile", "Budget", "get_board", "list_boards",
           "UartRx", "UartTx", "encode_8n1", "decode_8n1", "uart_divisor",
           "UartHarness", "Result", "Error", "encode_image", "encode_threshold", "encode_mode",
           "decode_frames"]
