"""rnnlab list: the registered architectures and experiments."""
from .. import available
from ..experiments import available as experiments

HELP = "list the registered architectures and experiments"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    print("architectures (rnnlab.build NAME / --arch NAME):")
    for name, desc in available().items():
        print(f"  {name:<20} {desc}")
    print("experiments (rnnlab experiment NAME):")
    for name, desc in experiments().items():
        print(f"  {name:<20} {desc}")
    return 0
