"""How far routing moves, and whether its part assignment follows the digits, in a MultiMNIST
CapsNet (the figures of docs/multimnist.md, "What routing does on pairs"):

    python docs/multimnist_routing.py capsviewer/resources/models/capsnet-multimnist.safetensors \\
        --pairs 1000 --iterations 3 10

For the first ``--pairs`` fixed test pairs and each R in ``--iterations``: the mean departure of
a_i = c_iA / (c_iA + c_iB) from ½ (weighted by ‖u_i‖) at every iteration, and on the pairs whose
two longest capsules are their labels the share of primary capsules over unequal ink whose
larger coupling goes to the winner with more ink under them (a coin scores 0.5).
"""

import argparse
from pathlib import Path

from capsviewer.analysis.overlap import assignment_statistics
from capsviewer.data.tasks import MULTIMNIST, get_task
from capsviewer.training import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--iterations", type=int, nargs="+", default=[3])
    parser.add_argument("--data-root", type=Path)
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint).model
    task = get_task(MULTIMNIST)
    pairs = task.test_set(task.load(False, args.data_root, download=False), args.pairs)
    print("| R | pairs | both found | mean ‖u‖-weighted \\|a_i − ½\\| per iteration "
          "| capsules siding with the digit under them |")
    print("|---:|---:|---:|---|---:|")
    for iterations in args.iterations:
        stats = assignment_statistics(model, pairs, iterations)
        departures = ", ".join(f"{d:.4f}" for d in stats.departure)
        print(f"| {iterations} | {stats.pairs:,} | {stats.both_found:,} | {departures} "
              f"| {stats.agreement:.1%} |", flush=True)


if __name__ == "__main__":
    main()
