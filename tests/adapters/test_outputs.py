"""Features from the adapters (issue 14): one forward pass gives logits, probabilities and penultimate features,
ConformalModel passes them on to fitted statistics, and on real Fashion-MNIST the union rule entropy + kNN
abstains far more under a strong corruption than on clean images (where entropy alone barely reacts)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adapters import ModelOutputs, reference  # noqa: E402
from adapters.conformal_model import ConformalModel  # noqa: E402
from adapters.datasets import load_fashion_mnist  # noqa: E402
from conformal import DualThresholdConformal  # noqa: E402


@pytest.fixture(scope="module")
def fashion():
    torch.set_num_threads(2)
    images, labels = load_fashion_mnist("test")
    return reference.load("fashion_cnn", progress=False), images, labels


def test_camera_predict_outputs_is_one_consistent_pass(fashion):
    cam, images, _ = fashion
    out = cam.predict_outputs(images[:200])
    assert isinstance(out, ModelOutputs) and len(out) == 200
    assert out.logits.dtype == np.float32 and out.features.dtype == np.float32 and out.features.shape == (200, 32)
    np.testing.assert_array_equal(out.logits, cam.predict_logits(images[:200]))
    np.testing.assert_array_equal(out.probs, cam.predict_proba(images[:200]))
    with torch.no_grad():  # the default features are the input of the last nn.Linear (the head)
        head = cam.model.head(torch.from_numpy(out.features)).numpy()
    np.testing.assert_allclose(head, out.logits, rtol=1e-5, atol=1e-5)
    named = cam.predict_outputs(images[:200], feature_layer="features")  # the pooled conv output, flattened
    np.testing.assert_array_equal(named.features, out.features)
    conv = cam.predict_outputs(images[:10], feature_layer="features.8")
    assert conv.features.shape == (10, 32 * 7 * 7)
    assert not cam.model.head._forward_pre_hooks and not cam.model.features._forward_hooks  # hooks removed


def test_feature_errors_name_the_problem(fashion):
    cam, images, _ = fashion
    with pytest.raises(ValueError, match="`feature_layer` 'nope'.*features.8"):
        cam.predict_outputs(images[:4], feature_layer="nope")
    from adapters import CameraClassifier

    plain = CameraClassifier(lambda x: x.flatten(1)[:, :10], preprocess=cam.preprocess)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        plain.predict_outputs(images[:4])


def test_lidar_predict_outputs():
    from adapters.datasets import make_shapes

    lidar = reference.load("shapes_pointnet", progress=False)
    clouds, _, _ = make_shapes(3, num_points=600, rng=0)
    out = lidar.predict_outputs(clouds)
    assert out.features.dtype == np.float32 and out.features.shape[0] == len(clouds)
    np.testing.assert_array_equal(out.logits, lidar.predict_logits(clouds))


def test_conformal_model_passes_features_logits_and_inputs(fashion):
    cam, images, labels = fashion
    dtc = DualThresholdConformal(score="lac", alpha=0.1, statistic=("entropy", "knn", "energy", "input_quality"),
                                 rule="budget", rule_params={"max_abstain": 0.2}, random_state=0)
    assert dtc.required_side_inputs() == ("features", "logits", "inputs")
    model = ConformalModel(adapter=cam, conformal=dtc).fit(images[:600], labels[:600])
    d = model.predict(images[600:800])
    out = cam.predict_outputs(images[600:800])
    ref = model.conformal_.predict(out.probs, features=out.features, logits=out.logits, inputs=images[600:800])
    np.testing.assert_array_equal(d.abstain, ref.abstain)
    np.testing.assert_array_equal(d.reasons, ref.reasons)
    assert d.reason_names == ("entropy", "knn", "energy", "input_quality")


def test_union_abstains_more_under_strong_corruption_on_real_fashion_mnist(fashion):
    """Real Fashion-MNIST, the shipped CNN: thresholds from 2000 clean calibration images only (10 % budget split
    5 % + 5 %); 1000 other test images clean and under fog / contrast at severity 5 (seeded corruptions)."""
    from perturbations.image import corrupt_batch

    cam, images, labels = fashion
    cal, test = slice(0, 2000), slice(2000, 3000)
    out = cam.predict_outputs(images[cal])
    union = DualThresholdConformal(score="lac", alpha=0.1, statistic=("entropy", "knn"), rule="budget",
                                   rule_params={"max_abstain": 0.1}, random_state=0)
    union.fit(out.probs, labels[cal], features=out.features)
    entropy = DualThresholdConformal(score="lac", alpha=0.1, statistic="entropy", rule="budget",
                                     rule_params={"max_abstain": 0.1}, random_state=0).fit(out.probs, labels[cal])
    clean = cam.predict_outputs(images[test])
    rate_clean = union.predict(clean.probs, features=clean.features).abstention_rate
    assert rate_clean <= 0.15  # budget 0.1; binomial sd on 1000 points ~0.01
    for name in ("fog", "contrast"):
        x = corrupt_batch(images[test][..., None], name, 5, rng=0)[..., 0]
        o = cam.predict_outputs(x)
        d = union.predict(o.probs, features=o.features)
        rate_entropy = entropy.predict(o.probs).abstention_rate
        assert d.abstention_rate >= 0.6 and d.abstention_rate >= rate_clean + 0.45, (name, d.abstention_rate)
        assert d.abstention_rate >= rate_entropy + 0.2, (name, d.abstention_rate, rate_entropy)
        assert d.reasons[:, 1].mean() > d.reasons[:, 0].mean()  # the kNN statistic is what reacts
