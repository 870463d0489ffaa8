"""The public API documents itself: every class and function that ``import rnnlab``
exposes (``rnnlab.__all__``, and the ``__all__`` of ``rnnlab.cells``, ``rnnlab.kernels``,
``rnnlab.layers``), and every public method rnnlab defines on them, has a docstring (its
own or the one of the contract method it overrides)."""
import inspect

import pytest

import rnnlab


def _public():
    seen = {}
    for mod in (rnnlab, rnnlab.cells, rnnlab.kernels, rnnlab.layers):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                seen.setdefault(name, obj)
    return seen


def _members(name, cls):
    for k, v in vars(cls).items():
        if k.startswith("_"):
            continue
        f = v.fget if isinstance(v, property) else getattr(v, "__func__", v)
        if inspect.isfunction(f):
            yield f"{name}.{k}", getattr(cls, k) if not isinstance(v, property) else v


def _undocumented():
    missing = []
    for name, obj in _public().items():
        if not obj.__module__.startswith("rnnlab"):
            continue
        doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
        if not doc or (inspect.isclass(obj) and tuple in obj.__bases__ and
                       doc.startswith(f"{name}(")):   # a NamedTuple's generated line
            missing.append(name)                      # (a class needs its own)
        if inspect.isclass(obj):
            missing += [m for m, v in _members(name, obj) if not inspect.getdoc(v)]
    return missing


def test_every_public_name_has_a_docstring():
    assert _undocumented() == []


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
                                  "ClockworkRNN", "DepthGatedLSTM", "GridLSTM"])
def test_layer_docstrings_say_what_forward_takes_and_returns(name):
    doc = inspect.getdoc(getattr(rnnlab, name))
    assert "forward(" in doc and "->" in doc
