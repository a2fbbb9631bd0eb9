"""Train a reference model on CPU and save its state_dict to ``adapters/weights/<name>.pt``.

    python -m adapters.train fashion_mnist   # SmallCNN, Fashion-MNIST (real), ~2 min on 2 cores
    python -m adapters.train digits          # SmallCNN, scikit-learn digits (real), < 1 min
    python -m adapters.train shapes          # SmallPointNet, synthetic open3d primitive shapes, ~2 min
    python -m adapters.train scenes_detector # SmallCenterNet on composite scenes (real objects and photographs,
                                             # synthetic composition): two detector stages, ~15 min on an idle
                                             # core, then the crop classifier, ~17 min (--start-stage 3: only
                                             # that); prints COCO AP (pycocotools). --quick: a ~10 min
                                             # recipe on 2 cores (AP@0.5 0.42, not the shipped 0.62),
                                             # written to scenes_detector_quick.pt
    python -m adapters.train lidar_detector  # BEVCenterNet, synthetic ray-cast street scans, ~15 min

Seeded (torch and NumPy), single process; prints held-out accuracy. The inputs go through the same adapter
preprocessing that `adapters.reference.load` uses at inference, so training and deployment see identical tensors.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from adapters import reference

TASKS = {"fashion_mnist": "fashion_cnn", "digits": "digits_cnn", "shapes": "shapes_pointnet",
         "scenes_detector": "scenes_detector", "lidar_detector": "lidar_detector"}
LIDAR_TRAIN = {"n_scenes": 600, "epochs": 10, "batch_size": 8, "lr": 3e-3}
LIDAR_HELDOUT = 100  # test-split scans 0..99 for the report printed after training


def train_lidar_detector(*, out_dir=None, log=print, **overrides):
    from adapters import datasets
    from adapters.lidar_detector import LidarDetector, centre_recall, train_detector

    cfg = {**LIDAR_TRAIN, **overrides}
    torch.manual_seed(0)
    t0 = time.time()
    scans, frames = datasets.load_lidar_scenes("train", cfg.pop("n_scenes"))
    log(f"lidar_detector: {len(scans)} SYNTHETIC training scans generated in {time.time() - t0:.0f} s")
    net = train_detector(scans, frames, log=log, **cfg)
    path = reference.weights_path("lidar_detector") if out_dir is None else \
        __import__("pathlib").Path(out_dir) / reference.REFERENCE["lidar_detector"]["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    test_scans, test_frames = datasets.load_lidar_scenes("test", LIDAR_HELDOUT)
    det = LidarDetector(net, **reference.REFERENCE["lidar_detector"]["detector"])
    rec = centre_recall(det.predict(test_scans), test_frames)
    log(f"lidar_detector: held-out BEV-centre recall (<= 2 m, >= 20 points, score >= 0.3) {rec:.3f}; saved {path} "
        f"({path.stat().st_size / 1024:.0f} KiB) in {time.time() - t0:.0f} s")
    return rec


def _tensors(name, inputs):
    """Model-input tensor for all `inputs`, through the reference adapter's own preprocessing."""
    adapter = reference.make_adapter(name, None)
    n, batch = adapter._check_inputs(inputs)
    return torch.cat([batch(lo, min(lo + 1024, n)) for lo in range(0, n, 1024)])


def _augment_cloud(x, gen):
    """Random rotation about all axes + jitter (the synthetic shapes are rotation-randomised too)."""
    q, r = torch.linalg.qr(torch.randn(x.shape[0], 3, 3, generator=gen))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    return x @ q + 0.01 * torch.randn(x.shape, generator=gen)


def fit(net, x, y, *, epochs, lr, batch_size, augment=None, seed=0, log=print):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        total, t0 = 0.0, time.time()
        for lo in range(0, len(x), batch_size):
            idx = perm[lo:lo + batch_size]
            xb = x[idx] if augment is None else augment(x[idx], gen)
            loss = loss_fn(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        log(f"  epoch {ep + 1}/{epochs}: loss {total / len(x):.4f} ({time.time() - t0:.1f} s)")
    return net.eval()


def accuracy(net, x, y):
    with torch.inference_mode():
        pred = torch.cat([net(x[lo:lo + 1024]).argmax(1) for lo in range(0, len(x), 1024)])
    return float((pred == y).float().mean())


def train(task: str, *, out_dir=None, log=print, start_stage: int = 1, quick: bool = False):
    from adapters import datasets

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks are: {', '.join(TASKS)}")
    name = TASKS[task]
    if task == "lidar_detector":
        return train_lidar_detector(out_dir=out_dir, log=log)
    torch.manual_seed(0)
    t0 = time.time()
    if quick and task != "scenes_detector":
        raise ValueError(f"`quick` applies to scenes_detector only; got task {task!r}")
    if task == "scenes_detector":
        if quick:
            if start_stage != 1:
                raise ValueError(f"`start_stage` applies to the full recipe only; got {start_stage} with quick")
            return _train_detector(name, out_dir=out_dir, log=log, stages=DETECTOR_STAGES_QUICK,
                                   file="scenes_detector_quick.pt")
        return _train_detector(name, out_dir=out_dir, log=log, start_stage=start_stage)
    if task == "fashion_mnist":
        images, labels = datasets.load_fashion_mnist("train")
        test_images, test_labels = datasets.load_fashion_mnist("test")
        xtr, ytr = images[:reference.FASHION_TRAIN_SIZE], labels[:reference.FASHION_TRAIN_SIZE]
        xte, yte = test_images[:2000], test_labels[:2000]
        kw = {"epochs": 3, "lr": 5e-3, "batch_size": 128}
    elif task == "digits":
        images, labels = datasets.load_digits_images(size=28)
        tr, held = reference.digits_split()
        xtr, ytr, xte, yte = images[tr], labels[tr], images[held], labels[held]
        kw = {"epochs": 15, "lr": 4e-3, "batch_size": 64}
    else:
        clouds, labels, _ = datasets.make_shapes(150, 1024, rng=reference.SHAPES_TRAIN_SEED)
        test_clouds, test_labels, _ = datasets.make_shapes(25, 1024, rng=1)
        xtr, ytr, xte, yte = clouds, labels, test_clouds, test_labels
        kw = {"epochs": 25, "lr": 3e-3, "batch_size": 32, "augment": _augment_cloud}
    x, xt = _tensors(name, xtr), _tensors(name, xte)
    y, yt = torch.from_numpy(np.asarray(ytr)), torch.from_numpy(np.asarray(yte))
    log(f"{name}: {len(x)} training inputs {tuple(x.shape[1:])}, {len(xt)} held-out; preprocessing "
        f"{time.time() - t0:.1f} s")
    net = fit(reference.build_model(name), x, y, log=log, **kw)
    acc = accuracy(net, xt, yt)
    path = reference.weights_path(name) if out_dir is None else \
        __import__("pathlib").Path(out_dir) / reference.REFERENCE[name]["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    log(f"{name}: held-out accuracy {acc:.4f}; saved {path} ({path.stat().st_size / 1024:.0f} KiB) "
        f"in {time.time() - t0:.0f} s")
    return acc


def _out_path(name, out_dir, file=None):
    from pathlib import Path

    if file is None:
        return reference.weights_path(name) if out_dir is None else Path(out_dir) / reference.REFERENCE[name]["file"]
    return (reference.weights_path(name).parent if out_dir is None else Path(out_dir)) / file


# The shipped scenes_detector's stages: 12 epochs from scratch, then 8 fine-tuning epochs on more scenes with a
# lower peak rate and the class loss weighted x2 (the class, not the box, was what AP lacked), then the second
# stage: the crop classifier (`SmallCenterNet.crop`) trained on crops of jittered ground-truth boxes, the rest
# frozen.
DETECTOR_STAGES = (
    {"n_train": 8000, "epochs": 12, "lr": 4e-3, "seed": 0, "class_weight": 1.0, "pct_start": 0.15},
    {"n_train": 12000, "epochs": 8, "lr": 1.5e-3, "seed": 1, "class_weight": 2.0, "pct_start": 0.1},
    {"crop": True, "n_train": 20000, "epochs": 16, "lr": 3e-3, "seed": 2},
)
# `--quick`: the same two stages on a budget of about 10 minutes on 2 idle cores (3 epochs of the heads on 8,000
# scenes, 4 of the crop classifier on the crops of 8,000), written to scenes_detector_quick.pt beside the shipped
# weights, never over them. Lower AP (docs/detection.md has both recipes' numbers).
DETECTOR_STAGES_QUICK = (
    {"n_train": 8000, "epochs": 3, "lr": 4e-3, "seed": 0, "class_weight": 1.5, "pct_start": 0.15},
    {"crop": True, "n_train": 8000, "epochs": 4, "lr": 3e-3, "seed": 2},
)


def _train_detector(name, *, out_dir=None, log=print, stages=DETECTOR_STAGES, start_stage=1, file=None,
                    n_test=None):
    """Run `stages` (from stage `start_stage`, 1-based: later starts read the weights of the earlier stages
    from the output file; written to `file` in `out_dir` if given) and report COCO AP on the test split (its
    first `n_test` scenes; default all)."""
    from adapters.coco_eval import coco_ap
    from adapters.datasets import load_composite_scenes
    from adapters.preprocess import ImagePreprocess
    from adapters.train_detector import train_crop_classifier, train_scenes_detector

    t0 = time.time()
    pre = ImagePreprocess(**reference.REFERENCE[name]["preprocess"])
    path = _out_path(name, out_dir, file)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = reference.build_model(name)
    if start_stage > 1:
        start = reference.weights_path(name) if not path.is_file() else path
        state = torch.load(start, map_location="cpu", weights_only=True)
        if start_stage > 2:  # the crop classifier (the last stage) is always trained afresh
            state = {k: v for k, v in state.items() if not k.startswith("crop")}
        res = net.load_state_dict(state, strict=False)
        if res.unexpected_keys or any(not k.startswith("crop") for k in res.missing_keys):
            raise ValueError(f"{start} does not hold the first stages of {name}: missing {res.missing_keys}, "
                             f"unexpected {res.unexpected_keys}")
        log(f"{name}: stages 1-{start_stage - 1} read from {start}")
    for i, kw in enumerate(stages):
        if i + 1 < start_stage:
            continue
        log(f"{name}: stage {i + 1}/{len(stages)} {kw}")
        # the state dict is saved after every epoch, so an interrupted run leaves usable weights
        fit = train_crop_classifier if kw.get("crop") else train_scenes_detector
        net = fit(net, pre, checkpoint=path, log=log, **{k: v for k, v in kw.items() if k != "crop"})
    torch.save(net.state_dict(), path)
    images, gts = load_composite_scenes("test", n_test)
    with torch.inference_mode():
        preds = [{k: v.numpy() for k, v in d.items()} for lo in range(0, len(images), 100)
                 for d in net(torch.from_numpy(pre(images[lo:lo + 100], "rgb")))]
    ap = coco_ap(preds, gts, net.num_classes)
    log(f"{name}: test scenes ({len(images)}) AP@0.5 {ap['AP50']:.3f}, AP@[.5:.95] {ap['AP']:.3f}; saved {path} "
        f"({path.stat().st_size / 1024:.0f} KiB) in {time.time() - t0:.0f} s")
    return ap


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m adapters.train", description=__doc__.split("\n")[0])
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--out-dir", default=None, help="folder for the .pt file (default: adapters/weights)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--quick", action="store_true",
                    help="scenes_detector: the ~10 min recipe (DETECTOR_STAGES_QUICK, lower AP), written to "
                         "scenes_detector_quick.pt; load it with reference.load('scenes_detector', weights=path)")
    ap.add_argument("--start-stage", type=int, default=1,
                    help="scenes_detector: first stage of DETECTOR_STAGES to run (1-based); the earlier stages' "
                         "weights are read from the output file, else from the shipped one (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.start_stage != 1 and args.task != "scenes_detector":
        ap.error("--start-stage applies to scenes_detector only")
    if args.quick and (args.task != "scenes_detector" or args.start_stage != 1):
        ap.error("--quick applies to scenes_detector, from the first stage, only")
    train(args.task, out_dir=args.out_dir, start_stage=args.start_stage, quick=args.quick)


if __name__ == "__main__":
    main()
