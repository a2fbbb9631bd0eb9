def test_demo_runs_on_real_digits_and_reports_every_score(capsys):
    from adapters.demo import main
    rows = main()
    assert [r["score"] for r in rows] == ["lac", "aps", "raps", "saps", "topk"]
    for r in rows:
        assert 0.8 <= r["coverage"] <= 1.0 and r["lo"] <= r["coverage"] <= r["hi"]
    assert "exchangeable" in capsys.readouterr().out
