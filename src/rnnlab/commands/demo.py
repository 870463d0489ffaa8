"""rnnlab demo: the README's main job (placeholder until the language-model demo lands).

Trains a plain RNN and an LSTM for a few seconds each to echo a bit seen D steps earlier,
and prints their accuracy: the LSTM keeps the bit over longer delays."""
import time
from pathlib import Path

import torch
from torch import nn

from .. import build

HELP = "train small models and show that an LSTM keeps a dependency a plain RNN loses"


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    parser.add_argument("--seconds", type=float, default=8.0, help="training time per model")


def _echo_batch(B: int, T: int, delay: int, gen: torch.Generator):
    bits = torch.randint(0, 2, (T, B), generator=gen)
    x = torch.nn.functional.one_hot(bits, 2).float()
    return x, bits[:-delay] if delay else bits


def _train(arch: str, delay: int, seconds: float) -> float:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    core = build(arch, 2, 32)
    head = nn.Linear(32, 2)
    opt = torch.optim.Adam([*core.parameters(), *head.parameters()], lr=1e-2)
    T = delay + 20
    end = time.time() + seconds
    while time.time() < end:
        x, y = _echo_batch(32, T, delay, gen)
        out, _ = core(x)
        loss = nn.functional.cross_entropy(head(out[delay:]).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x, y = _echo_batch(512, T, delay, gen)
        pred = head(core(x)[0][delay:]).argmax(-1)
        return (pred == y).float().mean().item()


def run(args) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    print("delayed echo: output the bit seen D steps ago (chance = 50%)")
    print(f"{'D':>4} {'rnn':>8} {'lstm':>8}")
    for delay in (2, 8, 16):
        accs = [_train(a, delay, args.seconds / 3) for a in ("rnn", "lstm")]
        print(f"{delay:>4} {accs[0]:>8.1%} {accs[1]:>8.1%}")
    return 0
