"""Streaming never loses or misjudges a frame (issue 17, group 5) and speaks the user's types (issue 18, section 2
and 5): frame ids, failed calls, allow_empty=False feedback, snapshots after out-of-order feedback, torch tensors,
ROS stamps, plain Python outputs and one schema for batch and per-frame dicts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from adapters.streaming import StreamingConformal
from conformal import DualThresholdConformal, SplitConformalClassifier

K = 5


def _data(n, seed=0, sharp=2.0):
    rng = np.random.default_rng(seed)
    z = sharp * rng.normal(size=(n, K))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p, np.array([rng.choice(K, p=row) for row in p])


P, Y = _data(1500)
CAL = SplitConformalClassifier(score="lac", alpha=0.1).fit(P[:500], Y[:500])


def _plain(value) -> bool:
    """Only plain Python values (no NumPy scalars) anywhere in an output."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


def test_explicit_and_automatic_ids_never_collide_and_the_ring_never_sticks():
    """Automatic ids skip ids an explicit frame took; after many ring wraps every step and feedback still works."""
    s = StreamingConformal(CAL, max_pending=4)
    assert s.step(P[500], frame_id=0)["frame_id"] == 0
    assert s.step(P[501])["frame_id"] == 1  # 0 is pending: the automatic id skips it
    assert s.step(P[502], frame_id=3)["frame_id"] == 3
    assert s.step(P[503])["frame_id"] == 2
    assert s.step(P[504])["frame_id"] == 4  # 3 is pending
    ids = []
    for t in range(60):  # mixed ids, many wraps of the ring of 4
        fid = s.step(P[505 + t], frame_id=100 + t if t % 3 == 0 else None)["frame_id"]
        ids.append(fid)
        assert len(set(s.pending_frames)) == len(s.pending_frames) <= 4
    assert s.n_steps_ == 65 and s.n_expired_ == 61
    for fid in ids[-4:]:
        s.feedback(fid, 0)
    assert s.n_feedback_ == 4 and s.pending_frames == []


def _custom_stat_model(fail):
    def stat(p):
        if fail["now"]:
            raise RuntimeError("sensor statistic unavailable")
        return 1.0 - p.max(axis=1)
    return DualThresholdConformal(score="lac", alpha=0.1, statistic=stat, rule="budget", random_state=0).fit(
        P[:500], Y[:500])


@pytest.mark.parametrize("failure", ["statistic", "nan_probs"])
def test_a_failed_step_leaves_the_state_unchanged(failure):
    """A step that raises (custom statistic raising, NaN input) with a full ring changes nothing: the oldest pending
    frame keeps its scores (its feedback is judged as in a stream that never saw the failed call)."""
    fail = {"now": False}
    streams = [StreamingConformal(_custom_stat_model(fail), method="fixed", max_pending=3,
                                  calibration_version="v") for _ in range(2)]
    for s in streams:
        for t in range(3):
            s.step(P[600 + t])
    fail["now"] = failure == "statistic"
    bad = P[700] if failure == "statistic" else np.full(K, np.nan)
    with pytest.raises(ValueError, match="statistic raised|NaN"):
        streams[0].step(bad)
    fail["now"] = False
    a, b = streams
    assert (a.n_steps_, a.n_expired_, a.pending_frames) == (b.n_steps_, b.n_expired_, b.pending_frames) == \
        (3, 0, [0, 1, 2])
    for t in range(3):
        label = int(P[600 + t].argmin())  # the least likely label: a miss unless the set is full
        assert a.feedback(t, label) == b.feedback(t, label)
    assert a.n_miss_ == b.n_miss_ and a.q_t_ == b.q_t_


def test_allow_empty_false_feedback_judges_the_published_set():
    """With allow_empty=False an empty set is published as the top-1 group; feedback counts a label in it as
    covered, so coverage_ equals the coverage of the published sets exactly."""
    p, y = _data(3000, seed=3, sharp=3.0)
    cal = SplitConformalClassifier(score="lac", alpha=0.25, allow_empty=False).fit(p[:1000], y[:1000])
    s = StreamingConformal(cal, method="fixed")
    covered, filled = 0, 0
    for t in range(1000, 3000):
        out = s.step(p[t])
        filled += float(1.0 - p[t][out["set"][0]]) > out["qhat"]
        covered += int(y[t]) in out["set"]
        assert s.feedback(out["frame_id"], int(y[t])) == (int(y[t]) not in out["set"])
    assert filled > 20  # the case occurs
    assert s.coverage_ == covered / 2000


@pytest.mark.parametrize("window", [None, 8])
def test_snapshot_after_out_of_order_feedback_behaves_exactly_like_the_original(window, tmp_path):
    """Restored after out-of-order feedback, a snapshot expires the same frames and accepts and rejects exactly
    the feedback the original does."""
    rng = np.random.default_rng(5)
    s = StreamingConformal(CAL, window=window, max_pending=6)
    for t in range(9):
        s.step(P[500 + t])
    for fid in (7, 3, 5):  # out of order
        s.feedback(fid, int(Y[500 + fid]))
    s.save(tmp_path / "s.json")
    r = StreamingConformal.load(tmp_path / "s.json")
    for t in range(9, 40):
        assert r.step(P[500 + t]) == s.step(P[500 + t])
        for fid in rng.integers(max(0, t - 9), t + 1, size=2).tolist():
            outcomes = []
            for stream in (s, r):
                try:
                    outcomes.append(stream.feedback(fid, int(Y[500 + fid])))
                except ValueError as exc:
                    outcomes.append(str(exc))
            assert outcomes[0] == outcomes[1], (t, fid)
        assert r.pending_frames == s.pending_frames and r.n_expired_ == s.n_expired_ and r.q_t_ == s.q_t_


def test_torch_tensors_are_accepted_in_step():
    torch = pytest.importorskip("torch")
    a, b = StreamingConformal(CAL), StreamingConformal(CAL)
    for t in range(20):
        row = P[600 + t]
        assert a.step(torch.from_numpy(row)) == b.step(row)
        assert a.step(torch.tensor(row, dtype=torch.float32)) == b.step(row.astype(np.float32))
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        a.step(object())
    if torch.cuda.is_available():  # copied to the host
        assert a.step(torch.from_numpy(P[700]).cuda()) == b.step(P[700])


def test_frame_ids_accept_ros_stamps_and_floats_and_outputs_are_plain_python(tmp_path):
    s = StreamingConformal(CAL, reference=P[:500])
    out = s.step(P[600], frame_id=(1700000000, 250000000))
    assert out["frame_id"] == (1700000000, 250000000) and _plain(out)
    assert s.step(P[601], frame_id=12.5)["frame_id"] == 12.5
    out = s.step(P[602], frame_id=np.int64(7))
    assert type(out["frame_id"]) is int and _plain(out)
    for bad, exc in (((1, 2, 3), ValueError), ((1, 10 ** 9), ValueError), (math.nan, ValueError),
                     (True, TypeError), ([1.5, 2], ValueError)):
        with pytest.raises(exc, match="frame_id"):
            s.step(P[603], frame_id=bad)
    assert s.n_steps_ == 3
    s.save(tmp_path / "s.json")
    r = StreamingConformal.load(tmp_path / "s.json")
    assert r.pending_frames == s.pending_frames
    assert r.feedback((1700000000, 250000000), int(Y[600])) == s.feedback((1700000000, 250000000), int(Y[600]))
    assert r.feedback(12.5, 0) == s.feedback(12.5, 0)
    with pytest.raises(ValueError, match="not waiting"):
        r.feedback((1700000000, 250000000), 0)


def test_batch_to_dicts_and_step_share_one_schema():
    """Decisions.to_dicts(probs, frame_ids) gives, for the same inputs, the same keys, types and values as step
    (which adds its online keys)."""
    model = DualThresholdConformal(score="lac", alpha=0.1, statistic="entropy", rule="budget",
                                   random_state=0).fit(P[:500], Y[:500])
    s = StreamingConformal(model, method="fixed")
    batch = model.predict(P[600:650]).to_dicts(probs=P[600:650], frame_ids=np.arange(50))
    for t, row in enumerate(batch):
        out = s.step(P[600 + t])
        assert _plain(row) and set(row) <= set(out)
        assert out["set"] == row["set"] and out["frame_id"] == row["frame_id"] == t
        assert out["prediction"] == row["prediction"] and out["abstain"] == row["abstain"]
        np.testing.assert_allclose([out["statistic"], out["confidence"], *out["set_probs"]],
                                   [row["statistic"], row["confidence"], *row["set_probs"]], rtol=1e-12)
        assert {k: type(out[k]) for k in row} == {k: type(v) for k, v in row.items()}
