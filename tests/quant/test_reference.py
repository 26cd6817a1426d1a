import numpy as np
import torch

from exitgate.quant.reference import conv2d_int, linear_int, maxpool_int


def test_integer_ops_match_torch_in_float64():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (3, 4, 7, 5))
    w = rng.integers(-127, 128, (6, 4, 3, 3))
    b = rng.integers(-5000, 5000, 6)
    want = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64),
                                      torch.tensor(w, dtype=torch.float64),
                                      torch.tensor(b, dtype=torch.float64), padding=1)
    np.testing.assert_array_equal(conv2d_int(x, w, b, 1), want.long().numpy())
    want = torch.nn.functional.max_pool2d(torch.tensor(x, dtype=torch.float64), 2)
    np.testing.assert_array_equal(maxpool_int(x), want.long().numpy())  # odd sizes floor
    f = x.reshape(3, -1)
    w2 = rng.integers(-127, 128, (10, f.shape[1]))
    np.testing.assert_array_equal(linear_int(f, w2, b[:1].repeat(10)), f @ w2.T + b[0])
