"""The shipped reference detector `scenes_detector` on held-out composite scenes: a fixed AP floor (pycocotools)
and conformal box / class-set coverage of its clean outputs over random calibration/test splits."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")
pytest.importorskip("skimage")

from adapters import reference  # noqa: E402
from adapters.datasets import load_composite_scenes  # noqa: E402
from conformal.detection import ConformalDetector, evaluate_detector  # noqa: E402

AP50_FLOOR = 0.58  # measured 0.62 on this slice with the crop classifier (0.52 without it), minus a margin


@pytest.fixture(scope="module")
def heldout():
    """Detections on the first 400 test scenes: objects and photographs the detector never saw."""
    torch.set_num_threads(2)
    images, gts = load_composite_scenes("test", 400)
    return reference.load("scenes_detector", progress=False).predict(images), gts


def test_weights_are_small_and_load():
    path = reference.weights_path("scenes_detector")
    assert path.is_file() and path.stat().st_size < 3 * 2 ** 20
    net = reference.load_model("scenes_detector")
    assert sum(p.numel() for p in net.parameters()) < 1_000_000
    assert net.crop is not None and 0.0 <= float(net.crop_mix) <= 1.0  # the second stage ships with the weights


def test_beats_a_fixed_ap_floor(heldout):
    pytest.importorskip("pycocotools")
    from adapters.coco_eval import coco_ap

    preds, gts = heldout
    ap = coco_ap(preds, gts, 10)
    assert ap["AP50"] >= AP50_FLOOR, ap
    assert ap["AP"] < ap["AP50"]
    shuffled = [dict(p, labels=np.roll(p["labels"], 1)) for p in preds[1:] + preds[:1]]  # wrong image each
    assert coco_ap(shuffled, gts, 10)["AP50"] < 0.1  # the floor is not reached by chance


def test_conformal_coverage_of_its_clean_outputs(heldout):
    """Mean coverage over 30 random 50/50 splits of the 400 scenes is 1 - alpha within 3 binomial SEs of the
    matched objects of one test half (+0.03 above for the max-rank correction's conservativeness)."""
    preds, gts = heldout
    alpha = 0.1
    box, cls, n_obj = [], [], []
    for r in range(30):
        perm = np.random.default_rng(r).permutation(len(preds))
        cal, test = perm[:200], perm[200:]
        det = ConformalDetector(alpha=alpha, alpha_cls=alpha, class_score="aps", scale="size",
                                score_threshold=0.2).fit([preds[i] for i in cal], [gts[i] for i in cal])
        res = evaluate_detector(det, [preds[i] for i in test], [gts[i] for i in test])
        box.append(res["box_joint"]["value"])
        cls.append(res["class_set"]["value"])
        n_obj.append(res["n_matched"])
    tol = 3 * np.sqrt(alpha * (1 - alpha) / np.mean(n_obj))
    assert np.mean(n_obj) > 150
    for name, cov in (("box", box), ("class", cls)):
        assert 1 - alpha - tol <= np.mean(cov) <= 1 - alpha + 0.03 + tol, (name, np.mean(cov), tol)


def test_training_recipe_runs_and_quick_weights_never_overwrite_the_shipped_ones(tmp_path):
    """`_train_detector` end to end on a tiny budget (two stages as the quick recipe has them, 16 scenes, one
    epoch each, no crop_mix search), into a file of its own; the argument rules of `--quick`."""
    from adapters import train

    shipped = reference.weights_path("scenes_detector")
    before = shipped.stat().st_mtime_ns, shipped.stat().st_size
    stages = ({**train.DETECTOR_STAGES_QUICK[0], "n_train": 16, "epochs": 1},
              {**train.DETECTOR_STAGES_QUICK[1], "n_train": 16, "epochs": 1, "mix_grid": ()})
    ap = train._train_detector("scenes_detector", out_dir=tmp_path, log=lambda *a: None, stages=stages,
                               file="scenes_detector_quick.pt", n_test=40)
    assert 0.0 <= ap["AP50"] <= 1.0
    out = tmp_path / "scenes_detector_quick.pt"
    net = reference.load_model("scenes_detector", weights=out)  # a complete state dict: both stages
    assert net.crop is not None
    assert (shipped.stat().st_mtime_ns, shipped.stat().st_size) == before
    assert train._out_path("scenes_detector", None, "scenes_detector_quick.pt") == \
        shipped.parent / "scenes_detector_quick.pt"
    with pytest.raises(ValueError, match="quick"):
        train.train("digits", quick=True)
    with pytest.raises(ValueError, match="start_stage"):
        train.train("scenes_detector", quick=True, start_stage=2)
    with pytest.raises(SystemExit):
        train.main(["digits", "--quick"])
