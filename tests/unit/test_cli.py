import pytest

from hyper.cli.routing import parse_budget
from hyper.core.errors import InvalidArgument
from hyper.data.dataset_files import parse_columns


@pytest.mark.parametrize("text, expected", [("0.25", {"fraction": 0.25}), ("25%", {"fraction": 0.25}),
                                            ("500", {"count": 500}), ("1e-1", {"fraction": 0.1}),
                                            ("$1200", {"money": 1200.0})])
def test_budget_is_a_fraction_a_count_or_money(text, expected):
    assert parse_budget(text) == expected


def test_bad_budget_and_columns_name_the_flag():
    with pytest.raises(InvalidArgument) as caught:
        parse_budget("a lot")
    assert caught.value.field == "--budget"
    assert parse_columns(["prompt=question", "response_a=answer1"]) == {
        "prompt": "question", "response_a": "answer1"}
    with pytest.raises(InvalidArgument) as caught:
        parse_columns(["prompt"])
    assert caught.value.field == "--column"
