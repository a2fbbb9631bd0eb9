"""StreamingConformal: equality with the batch calibrators, ACI long-run coverage on a drifting stream,
the shift monitor's alarms and false-alarm rate, threads, snapshots and bad inputs. numpy + numba only."""
import math
import threading

import numpy as np
import pytest

from adapters.streaming import StreamingConformal
from conformal import ClassConditionalConformalClassifier, DualThresholdConformal, SplitConformalClassifier

K = 10


def _softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _data(rng, n, k=K, noise=0.0):
    """Synthetic classifier outputs: labels drawn from the probabilities, then with probability `noise` replaced
    by a uniform label (the model degrades: drift)."""
    probs = _softmax(2.5 * rng.normal(size=(n, k)))
    labels = (probs.cumsum(1) > rng.random((n, 1))).argmax(1)
    flip = rng.random(n) < noise
    labels[flip] = rng.integers(0, k, size=flip.sum())
    return probs, labels


@pytest.mark.parametrize("score", ["lac", "aps", "raps", "saps", "topk"])
def test_step_equals_batch_sets_without_feedback(score):
    rng = np.random.default_rng(0)
    p, y = _data(rng, 1500)
    cal = SplitConformalClassifier(randomized=False, allow_empty=True, score=score, alpha=0.1).fit(p[:1000], y[:1000])
    s = StreamingConformal(cal, reference=p[:1000])
    sets = cal.predict_sets(p[1000:])
    for i in range(500):
        out = s.step(p[1000 + i])
        assert sorted(out["set"]) == np.flatnonzero(sets[i]).tolist()
        assert out["qhat"] == cal.qhat_ and out["alpha"] == 0.1  # no feedback: calibrated thresholds kept
        probs_in_set = p[1000 + i][out["set"]]
        assert np.all(np.diff(probs_in_set) <= 0)  # ordered by decreasing probability


def test_step_matches_dual_threshold_decisions():
    rng = np.random.default_rng(1)
    p, y = _data(rng, 3000)
    for stat in ["entropy", "max_prob", "margin", "set_size", "credibility"]:
        d = DualThresholdConformal(randomized=False, allow_empty=True,
                                   score="lac" if stat == "credibility" else "raps", alpha=0.1, statistic=stat,
                                   rule="budget", rule_params={"max_abstain": 0.2},
                                   random_state=0).fit(p[:2000], y[:2000])
        dec = d.predict(p[2000:2400])
        s = StreamingConformal(d)
        outs = [s.step(p[2000 + i]) for i in range(400)]
        assert np.array_equal([o["abstain"] for o in outs], dec.abstain), stat
        np.testing.assert_allclose([o["statistic"] for o in outs], dec.statistic, rtol=0, atol=1e-12)
        assert all(sorted(o["set"]) == np.flatnonzero(dec.sets[i]).tolist() for i, o in enumerate(outs))


def _drift_run(method, rng, T=20000, gamma=0.01, delay=7, window=None):
    p, y = _data(rng, 2000)
    cal = SplitConformalClassifier(randomized=False, allow_empty=True, score="aps", alpha=0.1).fit(p, y)
    s = StreamingConformal(cal, method=method, gamma=gamma, window=window)
    covered = np.empty(T, dtype=bool)
    queue = []
    for t in range(T):
        noise = 0.5 * t / T  # the model gets steadily worse
        pt, yt = _data(rng, 1, noise=noise)
        out = s.step(pt[0])
        covered[t] = yt[0] in out["set"]
        queue.append((out["frame_id"], int(yt[0])))
        if len(queue) > delay:  # delayed feedback, answered out of order within the delay
            j = int(rng.integers(len(queue)))
            s.feedback(*queue.pop(j))
    for fid, lab in queue:
        s.feedback(fid, lab)
    return covered, s


@pytest.mark.parametrize("method,window", [("aci", None), ("aci", 500), ("quantile", None)])
def test_long_run_coverage_on_drifting_stream(method, window):
    rng = np.random.default_rng(2)
    covered, s = _drift_run(method, rng, window=window, gamma=0.01 if method == "aci" else 0.02)
    assert abs(covered.mean() - 0.9) <= 0.01, covered.mean()
    assert abs(s.coverage_ - covered.mean()) < 1e-12  # feedback tallies agree with the truth
    fixed, _ = _drift_run("fixed", np.random.default_rng(2))
    assert fixed.mean() < 0.9 - 0.03  # fixed thresholds under-cover visibly on the same stream
    assert covered[-5000:].mean() > fixed[-5000:].mean() + 0.05


def test_aci_bound_holds():
    covered, s = _drift_run("aci", np.random.default_rng(3), T=5000, delay=0)
    miss = 1 - covered.mean()
    assert abs(miss - 0.1) <= s.aci_bound()


def _stream_entropy(rng, n, sharp=2.5):
    return _softmax(sharp * rng.normal(size=(n, K)))


def test_monitor_alarms_on_shift_and_switches_to_conservative():
    rng = np.random.default_rng(4)
    p, y = _data(rng, 2000)
    d = DualThresholdConformal(randomized=False, allow_empty=True,
                               score="raps", alpha=0.1, statistic="entropy", rule="budget",
                               rule_params={"max_abstain": 0.1},
                               random_state=0).fit(p, y)
    s = StreamingConformal(d, reference=_stream_entropy(rng, 2000), monitor_level=0.01)
    outs = [s.step(r) for r in _stream_entropy(rng, 1000)]
    assert not any(o["shift_alarm"] for o in outs)
    shifted = _stream_entropy(rng, 1000, sharp=1.0)  # flatter outputs: a sensor degraded
    outs2 = [s.step(r) for r in shifted]
    first = next(i for i, o in enumerate(outs2) if o["shift_alarm"])
    assert first < 100
    after = outs2[first:]
    assert all(o["mode"] == "conservative" and o["tau"] <= d.tau_ for o in after)
    normal_abstain = np.mean(d.predict(shifted[first:]).abstain)
    assert np.mean([o["abstain"] for o in after]) >= normal_abstain
    s.reset_monitor()
    assert s.step(shifted[0])["mode"] == "normal"


def test_monitor_false_alarm_rate_on_exchangeable_streams():
    level, n_streams = 0.05, 200
    rng = np.random.default_rng(5)
    p, y = _data(rng, 500)
    cal = SplitConformalClassifier(randomized=False, allow_empty=True, score="lac", alpha=0.1).fit(p, y)
    alarms = 0
    for _ in range(n_streams):
        s = StreamingConformal(cal, reference=_stream_entropy(rng, 2000), monitor_level=level,
                               random_state=int(rng.integers(1 << 30)))
        for r in _stream_entropy(rng, 1000):
            s.step(r)
        alarms += s.alarm_
    # level * n + 3 binomial SDs
    assert alarms <= level * n_streams + 3 * math.sqrt(n_streams * level * (1 - level)), alarms


def test_threaded_run_equals_single_threaded_replay():
    rng = np.random.default_rng(6)
    p, y = _data(rng, 1000)
    stream, labels = _data(rng, 3000, noise=0.3)
    cal = SplitConformalClassifier(randomized=False, allow_empty=True, score="aps", alpha=0.1).fit(p, y)
    s = StreamingConformal(cal, gamma=0.02, reference=p)
    outs, ready = [], threading.Semaphore(0)

    def producer():
        for r in stream:
            outs.append(s.step(r))
            ready.release()

    def consumer():
        for t in range(len(stream)):
            ready.acquire()
            s.feedback(t, int(labels[t]))

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert s.n_feedback_ == len(stream) and not s.pending_frames
    # replay in one thread: before frame t, apply exactly the feedback the threaded run had applied
    r = StreamingConformal(cal, gamma=0.02, reference=p)
    done = 0
    for t, o in enumerate(outs):
        while done < o["n_feedback"]:
            r.feedback(done, int(labels[done]))
            done += 1
        assert r.step(stream[t]) == o
    while done < len(stream):
        r.feedback(done, int(labels[done]))
        done += 1
    assert r.alpha_t_ == s.alpha_t_ and r.q_t_ == s.q_t_


def test_snapshot_round_trip_continues_identically(tmp_path):
    rng = np.random.default_rng(7)
    p, y = _data(rng, 1000)
    stream, labels = _data(rng, 400, noise=0.2)
    d = DualThresholdConformal(randomized=False, allow_empty=True,
                               score="aps", alpha=0.1, rule="budget", rule_params={"max_abstain": 0.2},
                               random_state=0).fit(p, y)
    a = StreamingConformal(d, window=100, gamma=0.02, reference=p)
    for t in range(200):
        a.step(stream[t], frame_id=f"f{t}")
        if t >= 5:
            a.feedback(f"f{t - 5}", int(labels[t - 5]))
    a.save(tmp_path / "s.json")
    b = StreamingConformal.load(tmp_path / "s.json")
    assert b.pending_frames == a.pending_frames
    for t in range(200, 400):
        assert a.step(stream[t], frame_id=f"f{t}") == b.step(stream[t], frame_id=f"f{t}")
        assert a.feedback(f"f{t - 5}", int(labels[t - 5])) == b.feedback(f"f{t - 5}", int(labels[t - 5]))
    assert a.alpha_t_ == b.alpha_t_ and a.q_t_ == b.q_t_


def test_bad_inputs_leave_state_unchanged():
    rng = np.random.default_rng(8)
    p, y = _data(rng, 500)
    cal = SplitConformalClassifier(randomized=False, allow_empty=True, score="aps", alpha=0.1).fit(p, y)
    s = StreamingConformal(cal, reference=p)
    s.step(p[0], frame_id=1)
    s.feedback(1, 3)
    s.step(p[1], frame_id=2)
    before = s.to_dict()
    bad_rows = [(p[0][:5], ValueError, "shape"), (p[0].astype(np.int64), TypeError, "float"),
                ([str(v) for v in p[0]], TypeError, "numbers"), (np.full(K, np.nan), ValueError, "NaN"),
                (p[0] * 2, ValueError, "outside|sum")]
    for row, exc, msg in bad_rows:
        with pytest.raises(exc, match=msg):
            s.step(row)
    with pytest.raises(ValueError, match="already waiting"):
        s.step(p[2], frame_id=2)
    with pytest.raises(ValueError, match="not waiting"):
        s.feedback(1, 0)  # already answered
    with pytest.raises(ValueError, match="not waiting"):
        s.feedback(99, 0)  # unknown
    with pytest.raises(ValueError, match="label"):
        s.feedback(2, K)
    with pytest.raises(TypeError, match="label"):
        s.feedback(2, 1.5)
    after = s.to_dict()
    assert before["state"]["n_steps"] == after["state"]["n_steps"] and \
        before["state"]["alpha_t"] == after["state"]["alpha_t"] and \
        before["state"]["pending_ids"] == after["state"]["pending_ids"]
    np.testing.assert_array_equal(before["state"]["monitor"], after["state"]["monitor"])
    with pytest.raises(TypeError, match="class-conditional"):
        StreamingConformal(ClassConditionalConformalClassifier(alpha=0.1).fit(p, y))
    with pytest.raises(ValueError, match="randomized"):
        StreamingConformal(SplitConformalClassifier(alpha=0.1, randomized=True, random_state=0).fit(p, y))
    with pytest.raises(ValueError, match="not fitted"):
        StreamingConformal(SplitConformalClassifier())
    with pytest.raises(ValueError, match="method"):
        StreamingConformal(cal, method="pid")
    with pytest.raises(ValueError, match="window"):
        StreamingConformal(cal, method="quantile", window=10)


def test_expired_frames_are_dropped_and_reported():
    rng = np.random.default_rng(9)
    p, y = _data(rng, 300)
    s = StreamingConformal(SplitConformalClassifier(randomized=False, allow_empty=True,
                                                    alpha=0.1).fit(p, y), max_pending=5)
    for r in p[:8]:
        s.step(r)
    assert s.n_expired_ == 3 and s.pending_frames == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="expired"):
        s.feedback(0, 1)


def test_schema_1_snapshot_loads_and_continues_like_a_fresh_run():
    """A snapshot written by conformal 0.1.0 (tests/conformal/data/schema_v1/make_files.py) continues exactly
    like the same stream run by the current code."""
    from pathlib import Path

    rng = np.random.default_rng(0)
    z = 2.0 * rng.normal(size=(600, 6))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.minimum((p.cumsum(1) > rng.random((600, 1))).argmax(1), 5).astype(np.int64)
    d = DualThresholdConformal(randomized=False, allow_empty=True,
                               score="aps", alpha=0.1, rule="budget", rule_params={"max_abstain": 0.2},
                               random_state=0).fit(p[:300], y[:300])
    fresh = StreamingConformal(d, window=50, gamma=0.02, reference=p[:300])
    for t in range(60):
        fresh.step(p[300 + t], frame_id=f"f{t}")
        if t >= 5:
            fresh.feedback(f"f{t - 5}", int(y[300 + t - 5]))
    old = StreamingConformal.load(Path(__file__).resolve().parents[1] / "conformal" / "data" / "schema_v1" /
                                  "streaming.json")
    assert old.pending_frames == fresh.pending_frames and old.alpha_t_ == fresh.alpha_t_ and old.q_t_ == fresh.q_t_
    for t in range(60, 120):
        a, b = old.step(p[300 + t], frame_id=f"f{t}"), fresh.step(p[300 + t], frame_id=f"f{t}")
        a.pop("calibration_version"), b.pop("calibration_version")  # a hash of the state's (older) layout
        assert a == b
        assert old.feedback(f"f{t - 5}", int(y[300 + t - 5])) == fresh.feedback(f"f{t - 5}", int(y[300 + t - 5]))


# --- the one-sided monitors of conformal.online.ShiftMonitor -------------------------------------------------
@pytest.mark.parametrize("martingale,level", [("power_mixture", 0.01), ("cusum", 1e-4)])
def test_one_sided_monitor_option_alarms_on_shift_quiet_on_clean(martingale, level):
    rng = np.random.default_rng(20)
    p, y = _data(rng, 2000)
    d = DualThresholdConformal(randomized=False, allow_empty=True, score="raps", alpha=0.1, statistic="entropy",
                               rule="budget",
                               rule_params={"max_abstain": 0.1}, random_state=0).fit(p, y)
    s = StreamingConformal(d, reference=_stream_entropy(rng, 2000), monitor_level=level, martingale=martingale)
    outs = [s.step(r) for r in _stream_entropy(rng, 1000)]
    assert not any(o["shift_alarm"] for o in outs)
    outs2 = [s.step(r) for r in _stream_entropy(rng, 300, sharp=1.0)]
    first = next(i for i, o in enumerate(outs2) if o["shift_alarm"])
    assert first < 60, first
    assert all(o["mode"] == "conservative" and o["tau"] <= d.tau_ for o in outs2[first:])
    # the log10 value reported is the monitor's own, and a snapshot continues it exactly
    s2 = StreamingConformal.from_dict(s.to_dict())
    row = _stream_entropy(rng, 1)[0]
    a, b = s.step(row), s2.step(row)
    assert a == b and s2.martingale == martingale


def test_default_monitor_is_still_the_fused_jumper():
    rng = np.random.default_rng(21)
    p, y = _data(rng, 600)
    cal = SplitConformalClassifier(score="lac", alpha=0.1).fit(p, y)
    ref = _stream_entropy(rng, 500)
    a = StreamingConformal(cal, reference=ref)
    b = StreamingConformal(cal, reference=ref, martingale="jumper")
    stream = _stream_entropy(rng, 200, sharp=1.5)
    for r in stream:
        oa, ob = a.step(r), b.step(r)
        assert oa == ob
    assert a.martingale == "jumper" and a.to_dict()["state"]["monitor"].shape == (4,)


def test_external_statistic_monitor():
    """The monitor on a statistic the caller computes (here a synthetic feature distance): it needs
    `monitor_value` per step, alarms on a shift of that statistic alone, and then abstains on every frame."""
    rng = np.random.default_rng(22)
    p, y = _data(rng, 1000)
    cal = SplitConformalClassifier(score="lac", alpha=0.1).fit(p, y)
    s = StreamingConformal(cal, reference_statistics=rng.normal(size=1000), martingale="power_mixture")
    stream = _stream_entropy(rng, 600)
    dist = np.concatenate([rng.normal(size=300), rng.normal(size=300) + 3.0])
    outs = [s.step(r, monitor_value=float(v)) for r, v in zip(stream, dist)]
    alarm = [o["shift_alarm"] for o in outs]
    first = alarm.index(True)
    assert 300 <= first < 340  # the mixture pays for its 300 clean inputs first (a CUSUM would not)
    assert all(o["abstain"] for o in outs[first:]) and not any(o["abstain"] for o in outs[:first])
    with pytest.raises(TypeError, match="monitor_value"):
        s.step(stream[0])
    with pytest.raises(ValueError, match="monitor_value"):
        StreamingConformal(cal, reference=p).step(stream[0], monitor_value=1.0)
    s2 = StreamingConformal.from_dict(s.to_dict())
    assert s2.step(stream[0], monitor_value=0.0)["abstain"]  # still alarmed, still refusing
    with pytest.raises(ValueError, match="martingale"):
        StreamingConformal(cal, reference=p, martingale="bayes")


def test_window_rule_inside_the_wrapper_equals_the_batch_rule():
    """StreamingConformal(shift_abstention=...) abstains frame by frame exactly as ShiftAwareAbstention.predict on
    the same stream (synthetic outputs; the window rule fitted with a synthetic shift statistic), and a snapshot
    taken mid-stream continues identically."""
    from conformal import ShiftAwareAbstention

    rng = np.random.default_rng(23)
    p, y = _data(rng, 1500)
    shift_ref = rng.normal(size=1500)
    est = ShiftAwareAbstention(window=60, min_window=20).fit(p, y, shift_statistic=shift_ref)
    cal = SplitConformalClassifier(score="lac", alpha=0.1).fit(p, y)
    stream = np.concatenate([_stream_entropy(rng, 150), _stream_entropy(rng, 150, sharp=1.0)])
    dist = np.concatenate([rng.normal(size=150), rng.normal(size=150) + 2.0])
    batch = est.predict(stream, shift_statistic=dist)
    r = est.abstention_level(stream, shift_statistic=dist)
    s = StreamingConformal(cal, reference_statistics=shift_ref, martingale="power_mixture", monitor_level=1e-12,
                           shift_abstention=est)
    outs = []
    for i, (row, v) in enumerate(zip(stream, dist)):
        if i == 200:
            s = StreamingConformal.from_dict(s.to_dict())
        outs.append(s.step(row, monitor_value=float(v)))
    assert [o["abstain"] for o in outs] == batch.abstain.tolist()
    np.testing.assert_allclose([o["window_abstention"] for o in outs], r, rtol=0, atol=1e-12)
    assert batch.abstain[200:].mean() > batch.abstain[:150].mean() + 0.5
    with pytest.raises(ValueError, match="reference_statistics"):
        StreamingConformal(cal, shift_abstention=est)
    with pytest.raises(TypeError, match="shift_abstention"):
        StreamingConformal(cal, shift_abstention=ShiftAwareAbstention())


def test_several_monitored_statistics():
    """reference_statistics as a mapping: one monitor per statistic at monitor_level / m (UnionShiftMonitor); the
    alarm names the statistic that shifted (synthetic distances: only "quality" shifts), the frames match the
    library monitor fed the same values and uniforms, and a snapshot continues identically."""
    from conformal.online import UnionShiftMonitor

    rng = np.random.default_rng(24)
    p, y = _data(rng, 1000)
    cal = SplitConformalClassifier(score="lac", alpha=0.1).fit(p, y)
    ref = {"knn": rng.normal(size=1000), "quality": rng.normal(size=800)}
    s = StreamingConformal(cal, reference_statistics=ref, martingale="power_mixture", monitor_level=0.01)
    stream = _stream_entropy(rng, 400)
    knn = rng.normal(size=400)
    quality = np.concatenate([rng.normal(size=200), rng.normal(size=200) + 3.0])
    twin = UnionShiftMonitor(ref, level=0.01)
    u = np.random.default_rng(0).random(4096)  # the wrapper's uniforms for random_state=0
    outs = []
    for i in range(400):
        if i == 250:
            s = StreamingConformal.from_dict(s.to_dict())
        value = {"quality": float(quality[i]), "knn": float(knn[i])} if i % 2 else (float(knn[i]), float(quality[i]))
        outs.append(s.step(stream[i], monitor_value=value))
        pv = twin.update((knn[i], quality[i]), u[i])
        assert outs[-1]["monitor_pvalues"] == pv and outs[-1]["monitor_pvalue"] == min(pv.values())
        assert outs[-1]["log10_martingale"] == twin.log10_value
    first = [o["shift_alarm"] for o in outs].index(True)
    assert 200 <= first < 230 and twin.alarm_step == first + 1
    assert outs[first - 1]["alarm_statistic"] is None and outs[first]["alarm_statistic"] == "quality"
    assert all(o["abstain"] for o in outs[first:]) and not any(o["abstain"] for o in outs[:first])
    with pytest.raises(TypeError, match="monitor_value"):
        s.step(stream[0], monitor_value=1.0)
    with pytest.raises(ValueError, match="monitor_value"):
        s.step(stream[0], monitor_value={"knn": 1.0})
    with pytest.raises(TypeError, match="monitor_value"):
        s.step(stream[0], monitor_value=(1.0, float("inf")))
    with pytest.raises(ValueError, match=r"reference_statistics\['quality'\]"):
        StreamingConformal(cal, reference_statistics={"knn": ref["knn"], "quality": np.arange(3.0)})


def _digits_union():
    """Real data: scikit-learn digits, a logistic regression, the input vector as features; the union rule
    DualThresholdConformal(statistic=("entropy", "knn")) fitted on clean calibration data."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    perm = np.random.default_rng(25).permutation(len(y))
    tr, cal, te = perm[:700], perm[700:1400], perm[1400:1700]
    model = LogisticRegression(max_iter=500).fit(x[tr], y[tr])
    dual = DualThresholdConformal(score="lac", alpha=0.1, statistic=("entropy", "knn"), rule="budget",
                                  rule_params={"max_abstain": 0.1}, random_state=0)
    dual.fit(model.predict_proba(x[cal]), y[cal], features=x[cal])
    return model, dual, x[te]


def test_union_rule_per_frame_equals_the_batch_rule():
    """StreamingConformal over DualThresholdConformal(statistic=("entropy", "knn")): per frame (features passed to
    step) the abstentions, reasons and statistics are predict's; a strong input shift (synthetic: pixels replaced by
    noise) makes the kNN statistic abstain on every frame while clean frames stay near the 10 % budget."""
    model, dual, x = _digits_union()
    rng = np.random.default_rng(26)
    noisy = 0.2 * x + 0.8 * rng.random(x.shape)
    for feats, clean in ((x, True), (noisy, False)):
        p = model.predict_proba(feats)
        batch = dual.predict(p, features=feats)
        s = StreamingConformal(dual, method="fixed")
        outs = [s.step(p[i], features=feats[i]) for i in range(len(p))]
        assert [o["abstain"] for o in outs] == batch.abstain.tolist()
        assert [o["reasons"] for o in outs] == [[n for n, h in zip(batch.reason_names, r) if h]
                                                for r in batch.reasons.tolist()]
        np.testing.assert_allclose([list(o["statistics"].values()) for o in outs], batch.statistics, rtol=1e-12)
        assert all(o["taus"] == dict(zip(("entropy", "knn"), dual.tau_.tolist())) for o in outs)
        rate = batch.abstain.mean()
        if clean:
            assert rate <= 0.2, rate
        else:
            assert rate >= 0.95 and all("knn" in o["reasons"] for o in outs if o["abstain"]), rate
    s2 = StreamingConformal.from_dict(s.to_dict())
    assert s2.step(p[0], features=noisy[0])["reasons"] == outs[0]["reasons"]


def test_union_rule_in_the_wrapper_refuses_missing_or_unneeded_side_inputs():
    model, dual, x = _digits_union()
    p = model.predict_proba(x[:1])[0]
    s = StreamingConformal(dual)
    with pytest.raises(ValueError, match="needs `features=`"):
        s.step(p)
    with pytest.raises(ValueError, match="`logits` is not used"):
        s.step(p, features=x[0], logits=np.zeros(10))
    with pytest.raises(TypeError, match="`features` must be a numpy array"):
        s.step(p, features=x[0].tolist())
    with pytest.raises(ValueError, match="`features` must have shape"):
        s.step(p, features=x[:2])
    assert s.n_steps_ == 0  # a refused step leaves the state as it was
    with pytest.raises(ValueError, match="reference_statistics"):
        StreamingConformal(dual, reference=model.predict_proba(x))
    plain = SplitConformalClassifier(score="lac", alpha=0.1).fit(model.predict_proba(x), np.zeros(len(x), int))
    with pytest.raises(ValueError, match="`features` is not used"):
        StreamingConformal(plain).step(p, features=x[0])


def test_step_accepts_a_list_like_the_array():
    rng = np.random.default_rng(11)
    p, y = _data(rng, 400)
    cal = SplitConformalClassifier(randomized=False, allow_empty=True, score="aps", alpha=0.1).fit(p, y)
    a, b = StreamingConformal(cal, reference=p), StreamingConformal(cal, reference=p)
    for row in p[:5]:
        assert a.step(row.tolist()) == b.step(row)
