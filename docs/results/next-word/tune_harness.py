"""The tuning harness behind docs/results/next-word/README.md's seed table (kept for the
record; not part of the package). Usage, from the repository root with PYTHONPATH=src:

    python3 tune_harness.py ARCH LR BPTT STEPS [CONFIG_FIELD=VALUE ...]

Trains the next_word demo's model (rnnlab.train.Trainer, config from
rnnlab.experiments.next_word.train_config) for STEPS steps and prints the probe accuracy
(80 probes per gap and kind) every 250 steps."""
import sys, time, torch
torch.set_num_threads(1)
from rnnlab.experiments.next_word import Config, train_config, probe_accuracy
from rnnlab.data.corpus import CorpusConfig, make_probes
from rnnlab.train import Trainer
import shutil, dataclasses
arch, lr, bptt, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
extra = dict(a.split("=") for a in sys.argv[5:])
cfg = Config(lr=lr, bptt=bptt, **{k: type(getattr(Config, k))(v) for k, v in extra.items()})
probes = make_probes(CorpusConfig(eval_gaps=cfg.eval_gaps, probes_per_gap=80), seed=1000003)
tc = train_config(cfg, arch); tc.max_time=None; tc.max_steps=steps
import os, tempfile; d=tempfile.mkdtemp()+"/r"; shutil.rmtree(d, ignore_errors=True)
tr = Trainer(tc, d, quiet=True)
t=time.time(); losses=[]
while tr.step < steps:
    losses.append(tr.train_step())
    if tr.step % 250 == 0:
        acc = probe_accuracy(tr.model, tr.corpus.vocab, probes); tr.model.train()
        print(arch, tr.step, f"{time.time()-t:.0f}s loss {sum(losses[-50:])/50:.3f}",
              "lang", " ".join(f"{v[0]:.2f}" for g,v in acc["language"].items()),
              "col", " ".join(f"{v[0]:.2f}" for g,v in acc["colour"].items()), flush=True)
