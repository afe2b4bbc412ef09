"""Names, keys and page tokens are whole matches: a trailing newline or a non-ASCII digit is refused
by field, never a second name for the same thing or an INTERNAL."""

import pytest

from hyper.core.errors import InvalidArgument
from hyper_ppm.store import check_name
from hyper_router.store import page_offset
from hyper_tagger.servicer import _content_keys


@pytest.mark.parametrize("name", ["r1\n", "r1\n\n", "\nr1"])
def test_a_model_name_with_a_newline_is_refused(name):
    assert check_name("ppm_model", "r1") == "r1"
    with pytest.raises(InvalidArgument, match="ppm_model"):
        check_name("ppm_model", name)


def test_a_content_key_with_a_newline_is_refused_by_position():
    assert _content_keys(["0123456789abcdef"], "keys") == ["0123456789abcdef"]
    with pytest.raises(InvalidArgument, match=r"keys\[1\]"):
        _content_keys(["0123456789abcdef", "0123456789abcdef\n"], "keys")


@pytest.mark.parametrize("token", ["²", "١٢", "-1", "11"])
def test_a_page_token_that_is_not_an_ascii_offset_of_the_route_is_refused(token):
    assert page_offset("4", 10) == 4
    with pytest.raises(InvalidArgument, match="page_token"):
        page_offset(token, 10)
