"""--flavor NAME=IMAGE[,pool-size=N][,landing=PATH][,static-dir=DIR] and --default-flavor:
what a node is told to serve, the specs it refuses, and the mixes with --image/--pool-size it
refuses as ambiguous (tmpnb/flavors.py, wired by tmpnb/tap.py)."""

from __future__ import annotations

import pytest
from twisted.python.usage import UsageError

from tmpnb.flavors import DEFAULT_FLAVOR, Flavor, FlavorError, Flavors, parse_flavor
from tmpnb.settings import web_settings
from tmpnb.tap import Options


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


# -- one spec ---------------------------------------------------------------------------


def test_a_spec_names_an_image_and_may_give_a_pool_size_a_landing_page_and_static_files():
    assert parse_flavor("py=tmpnb/notebook:latest", 3) == Flavor("py", "tmpnb/notebook:latest", 3)
    assert parse_flavor("course-1=reg.example:5000/course:v2,pool-size=0,landing=notebooks/Lesson1.ipynb,"
                        "static-dir=/srv/static-course", 3) == Flavor(
        "course-1", "reg.example:5000/course:v2", 0, "notebooks/Lesson1.ipynb", "/srv/static-course")


def test_a_landing_page_is_percent_encoded_like_any_path_below_the_server():
    assert parse_flavor("a=img,landing=notebooks/My Lesson.ipynb", 1).landing == "notebooks/My%20Lesson.ipynb"
    assert parse_flavor("a=img,landing=tree/notebooks/", 1).landing == "tree/notebooks/"


@pytest.mark.parametrize("spec", [
    "=img",                       # no name
    "Py=img",                     # upper case
    "py_3=img",                   # underscore
    "a" * 33 + "=img",            # too long
    "py",                         # no image
    "py=",                        # empty image
    "py=img with space",
    "py=img,pool-size=-1",
    "py=img,pool-size=three",
    "py=img,pool-size=1,pool-size=2",
    "py=img,colour=blue",         # unknown setting
    "py=img,landing",             # a setting without a value
])
def test_bad_specs_are_refused_with_a_reason(spec):
    with pytest.raises(FlavorError):
        parse_flavor(spec, 3)


@pytest.mark.parametrize("landing", [
    "/etc/passwd",                         # leading /
    "../../etc/passwd",                    # out of the server
    "notebooks/../../x",
    "notebooks/./x",
    "javascript:alert(1)",                 # a scheme
    "https://evil.example/",
    "//evil.example/x",
    "notebooks\\x",
    "notebooks/x?token=stolen",
    "notebooks/x#frag",
    "notebooks/\x07bell",
    "",
    "a/" * 600,                            # too long
])
def test_a_landing_page_that_could_leave_the_server_is_refused(landing):
    with pytest.raises(FlavorError):
        parse_flavor(f"py=img,landing={landing}", 3)


def test_two_flavors_of_one_name_and_an_unknown_default_are_refused():
    with pytest.raises(FlavorError):
        Flavors((Flavor("a", "i", 1), Flavor("a", "j", 1)), "a")
    with pytest.raises(FlavorError):
        Flavors((Flavor("a", "i", 1),), "b")


# -- the node's options -----------------------------------------------------------------


def test_an_image_that_is_one_of_the_flavors_says_nothing_more_and_is_accepted():
    assert parse("--flavor", "py=a", "--flavor", "r=b", "--image", "b")["flavors"].names() == ["py", "r"]


def test_without_flavor_the_node_has_one_flavor_named_default_of_image_and_pool_size():
    options = parse("--image", "mine:1", "--pool-size", "2")
    flavors = options["flavors"]
    assert flavors.names() == [DEFAULT_FLAVOR]
    assert flavors.default == DEFAULT_FLAVOR
    assert flavors.get(None) == Flavor(DEFAULT_FLAVOR, "mine:1", 2)
    assert web_settings(options, {}).container_image == "mine:1"


def test_flavors_in_order_the_first_is_the_default_unless_told():
    options = parse("--flavor", "py=tmpnb/notebook:latest,pool-size=2", "--flavor", "r=course:1,landing=notebooks/a.ipynb")
    flavors = options["flavors"]
    assert flavors.names() == ["py", "r"]
    assert flavors.default == "py"
    assert flavors.get("r").landing == "notebooks/a.ipynb"
    assert flavors.get("r").pool_size == 3  # the pool size's default: --pool-size is not given
    assert parse("--flavor", "py=a", "--flavor", "r=b", "--default-flavor", "r")["flavors"].default == "r"
    assert web_settings(parse("--flavor", "py=a", "--flavor", "r=b", "--default-flavor", "r"), {}).container_image == "b"


def test_a_capacity_below_the_default_pool_size_is_fine_when_the_flavors_fit_in_it():
    # --pool-size's default (3) is nobody's pool size with --flavor: it must not refuse --capacity 1.
    assert parse("--flavor", "py=a,pool-size=1", "--capacity", "1")["flavors"].pool_size() == 1
    with pytest.raises(UsageError):
        parse("--flavor", "py=a", "--capacity", "1")  # py's pool size is the default, 3
    with pytest.raises(UsageError):
        parse("--capacity", "1")  # no --flavor: --pool-size (3) is the node's


@pytest.mark.parametrize("argv", [
    ["--flavor", "py=a", "--image", "b"],                     # b: none of the flavors' images
    ["--flavor", "py=a", "--pool-size", "1"],                 # whose pool size?
    ["--flavor", "py=a", "--static-dir", "/srv/s"],           # whose static files?
    ["--flavor", "py=a", "--default-flavor", "r"],            # no such flavor
    ["--default-flavor", "r"],                                # without --flavor: only "default"
    ["--flavor", "py=a", "--flavor", "py=b"],                 # twice the same name
    ["--flavor", "py=a,pool-size=30", "--capacity", "20"],    # more than the capacity
    ["--flavor", "py=a,landing=../x"],
    ["--flavor", "Bad=a"],
])
def test_ambiguous_or_bad_mixes_are_usage_errors(argv):
    with pytest.raises(UsageError):
        parse(*argv)
