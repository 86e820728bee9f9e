from cbir_tutorial.lessons.original_score import share_within_threshold


def test_share_within_threshold_ignores_relevance():
    assert share_within_threshold([0.1, 0.5, 0.9, 1.2], 0.6) == 0.5
    assert share_within_threshold([], 1.0) == 0.0
