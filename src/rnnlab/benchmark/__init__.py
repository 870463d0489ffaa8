"""The speed harness behind ``make bench`` and ``rnnlab bench speed``: every registered
architecture against torch.nn in the same process (see ``rnnlab.benchmark.speed``)."""
