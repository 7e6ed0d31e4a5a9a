"""Train a few steps (tiny config, random weights, real SpaceNet tiles); under torchrun check after every step that
weights and prototypes are identical on all ranks. Writes the per-step global-batch loss to argv[1] (rank 0)."""

import json
import sys

import torch
import torch.distributed as dist

from rs_wsss.classes import load_class_set
from rs_wsss.config import tiny_config
from rs_wsss.model.wsss import WSSS
from rs_wsss.priors import build_priors
from rs_wsss.raster.io import open_scene
from rs_wsss.raster.tags import tags_from_vector
from rs_wsss.train.batches import FreshBatches
from rs_wsss.train.ddp import finish, init_from_env, world
from rs_wsss.train.loop import train
from rs_wsss.train.sampler import TileSampler

data = sys.argv[2]
init_from_env("cpu")
rank, n = world()
cfg = tiny_config(["train.iters=3", "train.batch=4", "train.checkpoint_every=100", "par.iters=2"])
cs = load_class_set("landcover")
scene = f"{data}/spacenet/sample_geotiff.tif"
rows = tags_from_vector([scene], f"{data}/spacenet/geotiff_labels.geojson", None, cs, 256, 0.0,
                        constant_class="building")
sampler = TileSampler(rows, {scene: open_scene(scene)}, cs, cfg)
torch.manual_seed(0)
model = WSSS(cfg, cs, *build_priors(cfg.priors))
record = {"loss": [], "identical": []}


def on_step(step, m, out):
    loss = out["loss"].detach().clone()
    state = torch.cat([p.detach().flatten() for p in m.trainable_parameters()] + [m.prototypes.flatten()])
    if n > 1:
        dist.all_reduce(loss)
        loss /= n
        states = [torch.zeros_like(state) for _ in range(n)]
        dist.all_gather(states, state)
        record["identical"].append(all(torch.equal(states[0], s) for s in states))
    record["loss"].append(float(loss))


train(model, FreshBatches(sampler), cfg.train, f"/tmp/ddp_test_{rank}.pt", on_step=on_step)
if rank == 0:
    json.dump(record, open(sys.argv[1], "w"))
finish()  # together: a rank leaving alone aborted at teardown now and then
